// Package httpwire holds the wire-format pieces shared by the edge's own
// HTTP/1.1 server (internal/http1), its HTTP/2 server (internal/http2) and
// the load balancer's synchronous client (lb): finding the end of a head,
// parsing its field lines into an http.Header the way net/textproto would,
// writing fields the way net/http does, a Content-Length body reader, the
// Date value, and the interned common field names in both spellings.
//
// Every parser here is strict on purpose: it accepts only what net/http
// reads the same way, and says "not mine" for anything else, so its
// callers can hand that to net/http unchanged.
package httpwire

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// HeadEnd returns the length of the head at the start of buf, through its
// blank line; 0 if buf holds no complete head yet; -1 if the head has a
// bare CR or LF. from is where an earlier call on a shorter buf stopped.
func HeadEnd(buf []byte, from int) int {
	for i := max(from, 1); i < len(buf); i++ {
		switch buf[i] {
		case '\r':
			if i+1 < len(buf) && buf[i+1] != '\n' {
				return -1
			}
		case '\n':
			if buf[i-1] != '\r' {
				return -1
			}
			if i >= 3 && buf[i-2] == '\n' && buf[i-3] == '\r' {
				return i + 1
			}
		}
	}
	if len(buf) > 0 && buf[0] == '\n' {
		return -1
	}
	return 0
}

// maxName bounds a field name parsed here; longer ones are left to
// net/http.
const maxName = 128

// ParseFields parses block — the field lines of a head, each ending in
// CRLF, without the blank line — into a new header, canonicalizing names
// as net/textproto does. Values are substrings of block. ok is false for
// a name that is not a token (space before the colon, obs-fold) or a
// value with a control byte other than HTAB.
func ParseFields(block string) (h http.Header, ok bool) {
	h = make(http.Header, strings.Count(block, "\n"))
	if !ParseFieldsInto(h, block) {
		return nil, false
	}
	return h, true
}

// ParseFieldsInto is ParseFields into h, an empty header the caller
// reuses; on false h holds part of block.
func ParseFieldsInto(h http.Header, block string) bool {
	_, ok := ParseFieldsReusing(h, block, nil)
	return ok
}

// ParseFieldsReusing is ParseFieldsInto that takes each field's first
// value slot from vals, when it has room, instead of one new allocation
// for them all; it returns the slots used, for the caller to reuse once
// nothing holds h's values any more.
func ParseFieldsReusing(h http.Header, block string, vals []string) ([]string, bool) {
	n := strings.Count(block, "\n")
	if cap(vals) < n {
		vals = make([]string, n) // one allocation for every first value
	}
	vals = vals[:n]
	all := vals
	var name [maxName]byte
	for len(block) > 0 {
		var key, v string
		var ok bool
		if key, v, block, ok = nextField(block, &name); !ok {
			return all, false
		}
		vals = add(h, key, v, vals)
	}
	return all, true
}

// add puts v under key in h: after its other values, or as its first in
// the first of vals, a slot of one allocation shared by every first
// value. It returns the slots left.
func add(h http.Header, key, v string, vals []string) []string {
	if prev := h[key]; prev != nil {
		h[key] = append(prev, v)
		return vals
	}
	vals[0] = v
	h[key] = vals[:1:1]
	return vals[1:]
}

// Has reports whether a field of fields is named name (canonical).
func Has(fields []Field, name string) bool {
	for _, f := range fields {
		if f.Name == name {
			return true
		}
	}
	return false
}

// Field is one field line of a head: its name, canonical, and its value.
type Field struct{ Name, Value string }

// AppendFields is ParseFields into a list: block's fields appended to
// dst in the order they came, one per line, names canonical. Where the
// header map costs more than it gives — a head relayed as it came — it
// costs no allocation of its own once dst has room.
func AppendFields(dst []Field, block string) ([]Field, bool) {
	var name [maxName]byte
	for len(block) > 0 {
		var key, v string
		var ok bool
		if key, v, block, ok = nextField(block, &name); !ok {
			return dst, false
		}
		dst = append(dst, Field{key, v})
	}
	return dst, true
}

// Header is a new header map of fields, as ParseFields makes it: each
// name's values in the order they came, one allocation for every first
// value.
func Header(fields []Field) http.Header {
	h := make(http.Header, len(fields))
	vals := make([]string, len(fields))
	for _, f := range fields {
		vals = add(h, f.Name, f.Value, vals)
	}
	return h
}

// nextField parses the first field line of block: its canonical name
// (built in name, interned when common), its value, the lines after it.
func nextField(block string, name *[maxName]byte) (key, v, rest string, ok bool) {
	end := strings.IndexByte(block, '\r')
	if end < 0 || end+1 >= len(block) || block[end+1] != '\n' {
		return "", "", "", false
	}
	line := block[:end]
	rest = block[end+2:]
	colon := strings.IndexByte(line, ':')
	if colon <= 0 || colon > maxName {
		return "", "", "", false
	}
	for i := 0; i < colon; i++ {
		c := line[i]
		if !IsTchar(c) {
			return "", "", "", false
		}
		if 'a' <= c && c <= 'z' && (i == 0 || line[i-1] == '-') {
			c -= 'a' - 'A'
		} else if 'A' <= c && c <= 'Z' && i > 0 && line[i-1] != '-' {
			c += 'a' - 'A'
		}
		name[i] = c
	}
	v = trimOWS(line[colon+1:])
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return "", "", "", false
		}
	}
	key, common := commonNames[string(name[:colon])]
	if !common {
		if string(name[:colon]) == line[:colon] {
			key = line[:colon]
		} else {
			key = string(name[:colon])
		}
	}
	return key, v, rest, true
}

// trimOWS is strings.Trim(v, " \t") without building a cutset per call
// (a few percent of a small request's CPU when run on every field).
func trimOWS(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// IsTchar reports whether c is an RFC 9110 token character.
func IsTchar(c byte) bool { return tchar[c] }

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

// commonNames interns the canonical names requests and responses carry
// most, so they cost no allocation of their own.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Age",
		"Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Range", "Content-Type", "Cookie", "Date", "Dnt", "Etag", "Expect",
		"Expires", "Forwarded", "Host", "Http2-Settings", "If-Match", "If-Modified-Since",
		"If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive", "Last-Modified", "Link",
		"Location", "Origin", "Pragma", "Priority", "Proxy-Connection", "Range", "Referer",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode",
		"Sec-Fetch-Site", "Sec-Fetch-User", "Server", "Set-Cookie", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Upgrade-Insecure-Requests", "User-Agent", "Vary", "Via",
		"X-Api-Key", "X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
		// Response fields an edge sends.
		"Alt-Svc", "Cache-Status", "Cdn-Cache-Control", "Content-Disposition", "Content-Location",
		"Retry-After", "Strict-Transport-Security", "Www-Authenticate", "X-Cache",
	} {
		m[k] = k
	}
	return m
}()

// WriteField writes "k: v" CRLF as net/http writes a field: line breaks
// in v become spaces (no response or request splitting), surrounding
// whitespace goes.
func WriteField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if !plainValue(v) {
		// The rare value that needs work; strings.Trim and ContainsAny
		// build a character set per call, 3% of a small hit's CPU when
		// run on every field.
		v = strings.Trim(v, " \t\r\n")
		if strings.ContainsAny(v, "\r\n") {
			v = newlineToSpace.Replace(v)
		}
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// plainValue reports whether v goes out as it is: no line break, no
// whitespace to trim at either end.
func plainValue(v string) bool {
	if v == "" {
		return true
	}
	if trimmed(v[0]) || trimmed(v[len(v)-1]) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			return false
		}
	}
	return true
}

func trimmed(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

var newlineToSpace = strings.NewReplacer("\r", " ", "\n", " ")

// ErrBodyClosed is a read after Close on a body cut short.
var ErrBodyClosed = errors.New("httpwire: read on closed body")

// SizedBody reads a Content-Length body of Left bytes from R. It returns
// io.EOF with the last bytes, and io.ErrUnexpectedEOF if the connection
// ends first.
type SizedBody struct {
	R    *bufio.Reader
	Left int64
}

func (b *SizedBody) Read(p []byte) (int, error) {
	if b.Left < 0 {
		return 0, ErrBodyClosed
	}
	if b.Left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.Left {
		p = p[:b.Left]
	}
	n, err := b.R.Read(p)
	b.Left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if b.Left == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// Close marks a body not read to its end as closed.
func (b *SizedBody) Close() error {
	if b.Left > 0 {
		b.Left = -1
	}
	return nil
}

// Trailers calls fn with each trailer field a handler set, by net/http's
// rules for responses: the names declared (the "Trailer" field's values
// as the head went out) that may be trailers, with their values in h as
// they are now; and every key of h with http.TrailerPrefix, the prefix
// cut. A name that is not a token is left out: it would put any bytes
// into the trailer section.
func Trailers(declared []string, h http.Header, fn func(name string, vv []string)) {
	for _, v := range declared {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if httpguts.ValidTrailerHeader(k) && httpguts.ValidHeaderFieldName(k) {
				fn(k, h[k])
			}
		}
	}
	for k, vv := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpguts.ValidTrailerHeader(name) && httpguts.ValidHeaderFieldName(name) {
			fn(name, vv)
		}
	}
}

// lowerNames maps each common name's HTTP/2 spelling (lower case) to its
// canonical one, and canonicalLower the reverse.
var lowerNames, canonicalLower = func() (map[string]string, map[string]string) {
	lower := make(map[string]string, len(commonNames))
	canon := make(map[string]string, len(commonNames))
	for k := range commonNames {
		l := strings.ToLower(k)
		lower[l] = k
		canon[k] = l
	}
	return lower, canon
}()

// CanonicalName is the http.Header key of a lower-case HTTP/2 field name,
// without an allocation for a common one.
func CanonicalName(lower string) string {
	if k, ok := lowerNames[lower]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(lower)
}

// LowerName is the HTTP/2 spelling of a header key; false for a key that
// is not a valid field name, which is left out as net/http does.
func LowerName(k string) (string, bool) {
	if l, ok := canonicalLower[k]; ok {
		return l, true
	}
	if !httpguts.ValidHeaderFieldName(k) {
		return "", false
	}
	return strings.ToLower(k), true
}

// Date is the Date field's value for now, formatted once a second.
func Date() string {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &cachedDate{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]

// EqualFold is strings.EqualFold for ASCII only: field names and the
// other tokens of HTTP are ASCII, and textproto's canonical form changes
// only the case of ASCII letters, never folds other runes (strings.EqualFold
// would take "zſtd" for "zstd").
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
