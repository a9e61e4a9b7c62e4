package http1

import (
	"bufio"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseHead: whatever the fast path's parser takes, net/http's reads
// the same way — method, target, Host, header fields, length, close — so
// taking the fast path never changes what a request means. (The reverse
// is not required: the parser may leave anything to net/http.)
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a/b?c=d HTTP/1.1\r\nHost: a.test:8080\r\nAccept: */*\r\nX-Two: 1\r\nx-two: 2\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: a\r\nuser-agent:  x y \t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: \xff\xfe\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1\r\n\r\n",
		"M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\nA-B-C: d\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		end := findEnd([]byte(raw), 0)
		if end <= 0 {
			return
		}
		h, ok := parseHead([]byte(raw[:end]), nil, nil)
		if !ok {
			return
		}
		req, ok := h.newRequest()
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw[:end])))
		if err != nil {
			t.Fatalf("fast path took %q, net/http refuses it: %v", raw[:end], err)
		}
		if req.Method != want.Method || req.URL.String() != want.URL.String() || req.Host != want.Host ||
			req.RequestURI != want.RequestURI || req.Close != want.Close {
			t.Fatalf("%q: fast %s %s host %q close %v; net/http %s %s host %q close %v", raw[:end],
				req.Method, req.URL, req.Host, req.Close, want.Method, want.URL, want.Host, want.Close)
		}
		if !reflect.DeepEqual(req.Header, want.Header) {
			t.Fatalf("%q: fast header %v; net/http %v", raw[:end], req.Header, want.Header)
		}
		if want.ContentLength != req.ContentLength && !(want.ContentLength == -1 && req.ContentLength == 0) {
			t.Fatalf("%q: fast length %d; net/http %d", raw[:end], req.ContentLength, want.ContentLength)
		}
	})
}

func TestFindEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", 27},
		{"GET / HTTP/1.1\r\nHost: a\r\n", 0},
		{"GET / HTTP/1.1\nHost: a\n\n", -1},
		{"\r\nGET / HTTP/1.1\r\n\r\n", -1},
		{"\x16\x03\x01", -1},
		{"0 / HTTP/1.1\r\r\n\r\n", -1},
		{"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", -1},
		{"", 0},
	} {
		if got := findEnd([]byte(tc.in), 0); got != tc.want {
			t.Errorf("findEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
