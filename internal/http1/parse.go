package http1

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// head is a request head the fast path takes: HTTP/1.1, origin-form
// target, one valid Host, no Transfer-Encoding, at most one Content-Length,
// no Expect, Upgrade, TE or Trailer, and Connection naming only
// keep-alive or close. Anything else — including anything malformed — is
// net/http's to answer, so the fast path never has to decide what a
// strange request means.
type head struct {
	method, target, host string
	header               http.Header
	vals                 []string // the header's value slots (see ParseFieldsReusing)
	contentLength        int64
	close                bool
}

// maxFastHead bounds the head the fast path parses; a larger one (big
// cookies) goes to net/http, which applies max_header_bytes.
const maxFastHead = 8 << 10

// findEnd returns the length of the head at the start of buf (through the
// blank line), 0 if buf holds no complete head yet, or -1 if the head
// cannot be one the fast path takes (a bare LF or CR, a first byte that
// starts no method). from is where the previous call stopped looking.
func findEnd(buf []byte, from int) int {
	if len(buf) >= 1 && !httpwire.IsTchar(buf[0]) {
		return -1 // a blank line, a TLS handshake, binary: not a method
	}
	return httpwire.HeadEnd(buf, from)
}

// parseHead parses a complete head (as findEnd delimits it). ok is false
// when the request is not one the fast path takes.
// The fields go into reuse, emptied first, when it is not nil, their
// values into the slots of vals when it has room.
func parseHead(raw []byte, reuse http.Header, vals []string) (h head, ok bool) {
	// One string for the whole head: method, target and every value are
	// substrings of it, so parsing allocates it, the header map and one
	// slice of values.
	s := string(raw)
	eol := bytes.IndexByte(raw, '\r')
	line := s[:eol]
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return h, false
	}
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 <= 0 || rest[sp2+1:] != "HTTP/1.1" {
		return h, false
	}
	h.method = internMethod(line[:sp1])
	for i := 0; i < sp1; i++ {
		if !httpwire.IsTchar(line[i]) {
			return h, false
		}
	}
	h.target = rest[:sp2]
	if h.target[0] != '/' {
		return h, false // absolute-form, authority-form, asterisk-form
	}
	for i := 0; i < len(h.target); i++ {
		if c := h.target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return h, false
		}
	}
	var fields http.Header
	if reuse != nil {
		clear(reuse)
		fields = reuse
		h.vals, ok = httpwire.ParseFieldsReusing(reuse, s[eol+2:len(s)-2], vals)
	} else {
		fields, ok = httpwire.ParseFields(s[eol+2 : len(s)-2])
	}
	if !ok {
		return h, false
	}
	h.header = fields
	hosts := fields["Host"]
	if len(hosts) != 1 || !httpguts.ValidHostHeader(hosts[0]) {
		return h, false
	}
	h.host = hosts[0]
	delete(fields, "Host") // as net/http: r.Host only
	// As net/http's request parsing: Pragma: no-cache alone also reads
	// as Cache-Control: no-cache.
	if p := fields["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := fields["Cache-Control"]; !ok {
			fields["Cache-Control"] = []string{"no-cache"}
		}
	}
	if cl, ok := fields["Content-Length"]; ok {
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if len(cl) > 1 || err != nil {
			return h, false
		}
		h.contentLength = int64(n)
	}
	for _, k := range []string{"Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer", "Http2-Settings"} {
		if _, ok := fields[k]; ok {
			return h, false
		}
	}
	for _, v := range fields["Connection"] {
		c, ok := connectionTokens(v)
		if !ok {
			return h, false
		}
		h.close = h.close || c
	}
	return h, true
}

// connectionTokens reports whether the Connection field says close, and
// whether it names only close and keep-alive: another token names a
// hop-by-hop field, which net/http's path handles.
func connectionTokens(v string) (close, ok bool) {
	for v != "" {
		var tok string
		if i := strings.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, ""
		}
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok = tok[1:]
		}
		for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
			tok = tok[:len(tok)-1]
		}
		switch {
		case tok == "":
		case asciiEqualFold(tok, "close"):
			close = true
		case asciiEqualFold(tok, "keep-alive"):
		default:
			return false, false
		}
	}
	return close, true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i]|0x20 != b[i] {
			return false
		}
	}
	return true
}

// newRequest builds the request net/http would: the URL parsed the same
// way, Host out of the header map.
func (h *head) newRequest() (http.Request, bool) {
	u, err := url.ParseRequestURI(h.target)
	if err != nil {
		return http.Request{}, false
	}
	r := http.Request{
		Method:        h.method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h.header,
		ContentLength: h.contentLength,
		Close:         h.close,
		Host:          h.host,
		RequestURI:    h.target,
		Body:          http.NoBody,
	}
	return r, true
}

func internMethod(m string) string {
	switch m {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	}
	return m
}
