package cdn

import (
	"net"
	"net/http"
	"strings"

	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// maxKeyLen bounds cache keys; longer requests are passed through uncached.
const maxKeyLen = 4096

// cacheKey returns the primary cache key of r: "https://host/path?query" with
// the scheme from the connection (never from a header), the Host lowercased
// and a default port removed. Nothing else of the request (no unkeyed header
// such as X-Forwarded-Host) contributes. ok is false for requests that must
// not be cached (absurd length, unusable host).
func cacheKey(r *http.Request) (string, bool) {
	tls := r.TLS != nil
	if info := reqinfo.From(r.Context()); info != nil && info.TLS {
		tls = true
	}
	host, ok := normalizeHost(r.Host, tls)
	if !ok {
		return "", false
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	n := 8 + len(host) + len(path) + 1 + len(r.URL.RawQuery)
	if n > maxKeyLen {
		return "", false
	}
	b.Grow(n)
	if tls {
		b.WriteString("https://")
	} else {
		b.WriteString("http://")
	}
	b.WriteString(host)
	b.WriteString(path)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	return b.String(), true
}

// normalizeHost lowercases host, strips a trailing dot and the scheme's
// default port. It rejects hosts with characters outside a conservative set,
// so a key can never carry control bytes or path syntax in its host part.
func normalizeHost(host string, tls bool) (string, bool) {
	if host == "" {
		return "", false
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, ""
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
	}
	if (tls && port == "443") || (!tls && port == "80") {
		port = ""
	}
	// One trailing dot (the FQDN form) goes; empty labels make no host
	// (and "a.." would otherwise normalize to "a.", then to "a").
	h = strings.ToLower(h)
	if strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return "", false
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 255 {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '_') {
			return "", false
		}
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", false
		}
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if port != "" {
		return h + ":" + port, true
	}
	return h, true
}
