package http1

import (
	"bufio"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// TestWriteHeaderFields: a head written from a field list is what
// WriteHeader writes for the same fields in the header map — status,
// fields, framing, Date, Connection: close, no body where none is
// allowed — and a head WriteHeader would hold back, or with framing
// fields in the map, is refused untouched so the caller can use the map.
func TestWriteHeaderFields(t *testing.T) {
	type F struct{ name, value string } // a field, as the cases write it
	list := func(fs []F) []httpwire.Field {
		var out []httpwire.Field
		for _, f := range fs {
			out = append(out, httpwire.Field{Name: f.name, Value: f.value})
		}
		return out
	}
	cases := []struct {
		name   string
		method string
		close  bool // the request asks to close
		code   int
		preset http.Header
		fields []F
		body   string
		lean   bool // WriteHeaderFields takes it
	}{
		{"plain", "GET", false, 200, http.Header{"X-Request-Id": {"id1"}},
			[]F{{"Content-Type", "text/plain"}, {"Content-Length", "5"}, {"Via", "1.1 edge"}}, "hello", true},
		{"repeated names in order", "GET", false, 200, http.Header{"X-Request-Id": {"ours"}},
			[]F{{"Set-Cookie", "a=1"}, {"Content-Type", "text/plain"}, {"Set-Cookie", "b=2"}, {"X-Request-Id", "theirs"}, {"Content-Length", "2"}}, "ok", true},
		{"backend date kept", "GET", false, 200, nil,
			[]F{{"Date", "Mon, 02 Jan 2006 15:04:05 GMT"}, {"Content-Type", "text/plain"}, {"Content-Length", "0"}}, "", true},
		{"client asked to close", "GET", true, 200, nil,
			[]F{{"Content-Type", "text/plain"}, {"Content-Length", "2"}}, "ok", true},
		{"HEAD", "HEAD", false, 200, nil,
			[]F{{"Content-Type", "text/plain"}, {"Content-Length", "100"}}, "", true},
		{"204 drops its length", "GET", false, 204, nil,
			[]F{{"Content-Length", "7"}, {"X-A", "1"}}, "", true},
		{"304 drops length and type", "GET", false, 304, nil,
			[]F{{"Content-Length", "7"}, {"Content-Type", "text/plain"}, {"Etag", `"v1"`}}, "", true},
		{"value with spaces trimmed", "GET", false, 200, nil,
			[]F{{"Content-Type", "text/plain"}, {"X-Odd", " a \r\nb "}, {"Content-Length", "1"}}, "x", true},
		{"no type: sniffed", "GET", false, 200, nil,
			[]F{{"Content-Length", "6"}}, "<html>", false},
		{"no length: computed", "GET", false, 200, nil,
			[]F{{"Content-Type", "text/plain"}}, "abc", false},
		{"two lengths", "GET", false, 200, nil,
			[]F{{"Content-Type", "text/plain"}, {"Content-Length", "1"}, {"Content-Length", "1"}}, "x", false},
		{"type in the map", "GET", false, 200, http.Header{"Content-Type": {"text/html"}},
			[]F{{"Content-Length", "1"}}, "x", true},
		{"length in the map", "GET", false, 200, http.Header{"Content-Length": {"1"}},
			[]F{{"Content-Type", "text/plain"}}, "x", false},
		{"Connection in the list", "GET", false, 200, nil,
			[]F{{"Content-Type", "text/plain"}, {"Content-Length", "1"}, {"Connection", "close"}}, "x", false},
		{"interim", "GET", false, 103, nil, []F{{"Link", "</a>"}}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			took := make(chan bool, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.preset {
					w.Header()[k] = v
				}
				if r.URL.Path == "/list" {
					ok := w.(FieldsWriter).WriteHeaderFields(tc.code, list(tc.fields))
					took <- ok
					if !ok {
						if len(w.Header()) != len(tc.preset) {
							t.Errorf("refused, but the header map changed: %v", w.Header())
						}
						for _, f := range tc.fields {
							w.Header()[f.name] = append(w.Header()[f.name], f.value)
						}
						w.WriteHeader(tc.code)
					}
				} else {
					for _, f := range tc.fields {
						w.Header()[f.name] = append(w.Header()[f.name], f.value)
					}
					w.WriteHeader(tc.code)
				}
				if tc.code >= 200 {
					fmt.Fprint(w, tc.body)
				}
			})
			_, fast, _ := servers(t, h, nil)
			conn := ""
			if tc.close {
				conn = "Connection: close\r\n"
			}
			get := func(path string) (*http.Response, string, bool) {
				resps, bodies, closed := exchange(t, fast, tc.method+" "+path+" HTTP/1.1\r\nHost: x\r\n"+conn+"\r\n", 1)
				if len(resps) != 1 {
					t.Fatalf("%s: %d responses", path, len(resps))
				}
				return resps[0], bodies[0], closed
			}
			got, gotBody, gotClosed := get("/list")
			want, wantBody, wantClosed := get("/map")
			if lean := <-took; lean != tc.lean {
				t.Errorf("WriteHeaderFields took it: %v, want %v", lean, tc.lean)
			}
			for _, r := range []*http.Response{got, want} {
				if r.Header.Get("Date") == "" && r.StatusCode >= 200 {
					t.Errorf("no Date: %v", r.Header)
				}
				if !strings.HasPrefix(r.Header.Get("Date"), "Mon, 02 Jan 2006") {
					r.Header.Del("Date") // the clock's
				}
			}
			if got.StatusCode != want.StatusCode || got.ContentLength != want.ContentLength || gotBody != wantBody ||
				gotClosed != wantClosed || !reflect.DeepEqual(got.Header, want.Header) {
				t.Errorf("from the list: %d len %d %q closed %v %v\nfrom the map:  %d len %d %q closed %v %v",
					got.StatusCode, got.ContentLength, gotBody, gotClosed, got.Header,
					want.StatusCode, want.ContentLength, wantBody, wantClosed, want.Header)
			}
		})
	}
}

// FuzzWriteHeaderFields: whatever field list WriteHeaderFields takes, the
// head it writes reads back as the one WriteHeader writes for the same
// fields in the header map (status, fields, framing), and it leaves the
// writer in the same state (length, no body, close after).
func FuzzWriteHeaderFields(f *testing.F) {
	f.Add(200, "Content-Type: text/plain\r\nContent-Length: 5\r\nVia: 1.1 edge\r\n", "X-Request-Id: id\r\n", false, false)
	f.Add(304, "Content-Length: 7\r\nContent-Type: a/b\r\nEtag: \"v\"\r\n", "", false, true)
	f.Add(204, "X-A: 1\r\nX-A: 2\r\n", "", true, false)
	f.Add(200, "Content-Type: t\r\nContent-Length:  12 \r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n", "", true, true)
	f.Fuzz(func(t *testing.T, code int, block, preset string, isHead, closeReq bool) {
		fields, ok := httpwire.AppendFields(nil, block)
		if !ok {
			return
		}
		pre, ok := httpwire.ParseFields(preset)
		if !ok {
			return
		}
		write := func(list bool) (string, *response, bool) {
			var buf strings.Builder
			c := &conn{s: &Server{}, bw: bufio.NewWriter(&buf)}
			w := &response{c: c, closeReq: closeReq, isHead: isHead, cl: -1}
			for k, v := range pre {
				w.Header()[k] = append([]string(nil), v...)
			}
			if list {
				if !w.WriteHeaderFields(code, fields) {
					return "", w, false
				}
			} else {
				for _, fl := range fields {
					w.Header()[fl.Name] = append(w.Header()[fl.Name], fl.Value)
				}
				w.WriteHeader(code)
				if !w.headSent {
					return "", w, false // held back: not the list's case
				}
			}
			c.bw.Flush()
			return buf.String(), w, true
		}
		got, gw, ok := write(true)
		if !ok {
			return
		}
		want, ww, ok := write(false)
		if !ok {
			t.Fatalf("the list wrote a head WriteHeader holds back: %q", got)
		}
		if gw.cl != ww.cl || gw.noBody != ww.noBody || gw.closeAfter != ww.closeAfter || gw.chunked != ww.chunked || gw.status != ww.status {
			t.Fatalf("state from the list %+v; from the map %+v", *gw, *ww)
		}
		read := func(s string) *http.Response {
			req := &http.Request{Method: "GET"}
			if isHead {
				req.Method = "HEAD"
			}
			r, err := http.ReadResponse(bufio.NewReader(strings.NewReader(s)), req)
			if err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			if !strings.HasPrefix(r.Header.Get("Date"), "Mon, 02 Jan 2006") {
				r.Header.Del("Date") // the clock's
			}
			return r
		}
		g, w := read(got), read(want)
		if g.StatusCode != w.StatusCode || !reflect.DeepEqual(g.Header, w.Header) || g.ContentLength != w.ContentLength || g.Close != w.Close {
			t.Fatalf("from the list %q\nfrom the map  %q", got, want)
		}
	})
}
