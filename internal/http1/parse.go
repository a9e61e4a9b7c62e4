package http1

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"

	"golang.org/x/net/http/httpguts"
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
	contentLength        int64
	close                bool
}

// maxFastHead bounds the head the fast path parses; a larger one (big
// cookies) goes to net/http, which applies max_header_bytes.
const maxFastHead = 8 << 10

// findEnd returns the length of the head at the start of buf (through the
// blank line), 0 if buf holds no complete head yet, or -1 if the head
// cannot be one the fast path takes (a bare LF or CR, a first byte that
// starts no method).
// from is where the previous call stopped looking.
func findEnd(buf []byte, from int) int {
	if len(buf) >= 1 && !isTchar(buf[0]) {
		return -1 // a blank line, a TLS handshake, binary: not a method
	}
	for i := max(from, 1); i < len(buf); i++ {
		if buf[i] == '\r' {
			if i+1 < len(buf) && buf[i+1] != '\n' {
				return -1 // a bare CR
			}
			continue
		}
		if buf[i] != '\n' {
			continue
		}
		if buf[i-1] != '\r' {
			return -1
		}
		if i >= 3 && buf[i-2] == '\n' && buf[i-3] == '\r' {
			return i + 1
		}
	}
	return 0
}

// parseHead parses a complete head (as findEnd delimits it). ok is false
// when the request is not one the fast path takes.
func parseHead(raw []byte) (h head, ok bool) {
	// One string for the whole head: method, target and every value are
	// substrings of it, so parsing allocates it, the header map and one
	// slice of values.
	s := string(raw)
	eol := bytes.IndexByte(raw, '\r')
	line := s[:eol]
	sp1 := indexByte(line, ' ')
	if sp1 <= 0 {
		return h, false
	}
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 <= 0 || rest[sp2+1:] != "HTTP/1.1" {
		return h, false
	}
	h.method = internMethod(line[:sp1])
	for i := 0; i < sp1; i++ {
		if !isTchar(line[i]) {
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
	body := s[eol+2 : len(s)-2] // the header lines, each ending in CRLF
	n := 0
	for i := 0; i < len(body); i++ {
		if body[i] == '\n' {
			n++
		}
	}
	h.header = make(http.Header, n)
	vals := make([]string, n)
	hosts, lengths := 0, 0
	var name [64]byte
	for len(body) > 0 {
		end := indexByte(body, '\r')
		fl := body[:end]
		body = body[end+2:]
		colon := indexByte(fl, ':')
		if colon <= 0 || colon > len(name) {
			return h, false // no name, or a name to leave to net/http
		}
		for i := 0; i < colon; i++ {
			c := fl[i]
			if !isTchar(c) {
				return h, false // includes space before the colon, obs-fold
			}
			if 'a' <= c && c <= 'z' && (i == 0 || fl[i-1] == '-') {
				c -= 'a' - 'A'
			} else if 'A' <= c && c <= 'Z' && i > 0 && fl[i-1] != '-' {
				c += 'a' - 'A'
			}
			name[i] = c
		}
		v := fl[colon+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return h, false
			}
		}
		key, common := commonHeader[string(name[:colon])]
		if !common {
			if string(name[:colon]) == fl[:colon] {
				key = fl[:colon]
			} else {
				key = string(name[:colon])
			}
		}
		switch key {
		case "Host":
			hosts++
			if hosts > 1 || !httpguts.ValidHostHeader(v) {
				return h, false
			}
			h.host = v
			continue // net/http keeps Host out of the map too
		case "Content-Length":
			lengths++
			cl, err := strconv.ParseUint(v, 10, 63)
			if lengths > 1 || err != nil || v[0] == '+' {
				return h, false
			}
			h.contentLength = int64(cl)
		case "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer", "Http2-Settings":
			return h, false
		case "Connection":
			c, ok := connectionTokens(v)
			if !ok {
				return h, false
			}
			h.close = h.close || c
		}
		if prev := h.header[key]; prev != nil {
			h.header[key] = append(prev, v)
			continue
		}
		vals[0] = v
		h.header[key] = vals[:1:1]
		vals = vals[1:]
	}
	if hosts != 1 {
		return h, false
	}
	return h, true
}

// connectionTokens reports whether the Connection field says close, and
// whether it names only close and keep-alive: another token names a
// hop-by-hop field, which net/http's path handles.
func connectionTokens(v string) (close, ok bool) {
	for v != "" {
		var tok string
		if i := indexByte(v, ','); i >= 0 {
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

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
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

// isTchar is RFC 9110's token character.
func isTchar(c byte) bool {
	return tchar[c]
}

var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// commonHeader interns the canonical names clients send most, so they
// cost no allocation of their own.
var commonHeader = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie", "Date",
		"Dnt", "Forwarded", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Origin", "Pragma", "Priority", "Range", "Referer", "Sec-Ch-Ua",
		"Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode",
		"Sec-Fetch-Site", "Sec-Fetch-User", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Upgrade-Insecure-Requests", "User-Agent", "Via", "X-Api-Key", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id", "Expect",
		"Http2-Settings", "Keep-Alive", "Proxy-Connection",
	} {
		m[k] = k
	}
	return m
}()
