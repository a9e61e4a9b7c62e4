package http2

import (
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// TestWriteHeaderFields: a final head given as a field list (the pass
// lane's relay) reaches the client as WriteHeader's with the same fields
// in the map — names lowered, the length as declared or computed, Date,
// no body where none is allowed — and a head it refuses (a length in the
// map, hop-by-hop fields, an interim status) is left to the map
// untouched.
func TestWriteHeaderFields(t *testing.T) {
	type F struct{ name, value string }
	cases := []struct {
		name   string
		code   int
		preset http.Header
		fields []F
		body   string
		lean   bool
	}{
		{"plain", 200, http.Header{"X-Request-Id": {"id1"}},
			[]F{{"Content-Type", "text/plain"}, {"Content-Length", "5"}, {"Via", "1.1 edge"}}, "hello", true},
		{"repeated names", 200, http.Header{"X-Request-Id": {"ours"}},
			[]F{{"Set-Cookie", "a=1"}, {"X-Request-Id", "theirs"}, {"Set-Cookie", "b=2"}, {"Content-Type", "text/plain"}}, "ok", true},
		{"first length decides", 200, nil,
			[]F{{"Content-Type", "text/plain"}, {"Content-Length", "2"}, {"Content-Length", "9"}}, "ok", true},
		{"untyped: sniffed", 200, nil, []F{{"Content-Length", "6"}}, "<html>", true},
		{"backend date", 200, nil, []F{{"Date", "Mon, 02 Jan 2006 15:04:05 GMT"}, {"Content-Type", "text/plain"}}, "", true},
		{"304", 304, nil, []F{{"Etag", `"v1"`}, {"Content-Length", "7"}}, "", true},
		{"type in the map", 200, http.Header{"Content-Type": {"text/html"}}, []F{{"Content-Length", "1"}}, "x", true},
		{"length in the map", 200, http.Header{"Content-Length": {"1"}}, []F{{"Content-Type", "text/plain"}}, "x", false},
		{"hop-by-hop in the list", 200, nil, []F{{"Content-Type", "text/plain"}, {"Keep-Alive", "timeout=5"}}, "x", false},
		{"interim", 103, nil, []F{{"Link", "</a>"}}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			took := make(chan bool, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.preset {
					w.Header()[k] = v
				}
				list := r.URL.Path == "/list"
				if list {
					var fields []httpwire.Field
					for _, f := range tc.fields {
						fields = append(fields, httpwire.Field{Name: f.name, Value: f.value})
					}
					ok := w.(interface {
						WriteHeaderFields(int, []httpwire.Field) bool
					}).WriteHeaderFields(tc.code, fields)
					took <- ok
					if ok {
						fmt.Fprint(w, tc.body)
						return
					}
					if len(w.Header()) != len(tc.preset) {
						t.Errorf("refused, but the header map changed: %v", w.Header())
					}
				}
				for _, f := range tc.fields {
					w.Header()[f.name] = append(w.Header()[f.name], f.value)
				}
				w.WriteHeader(tc.code)
				if tc.code >= 200 {
					fmt.Fprint(w, tc.body)
				}
			})
			addr, client, _, _ := startServer(t, h, nil)
			get := func(path string) (*http.Response, string) {
				resp, err := client.Get("https://" + addr + path)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.Header.Get("Date") == "" {
					t.Errorf("%s: no Date", path)
				}
				if resp.Header.Get("Date") != "Mon, 02 Jan 2006 15:04:05 GMT" {
					resp.Header.Del("Date")
				}
				return resp, string(b)
			}
			got, gotBody := get("/list")
			want, wantBody := get("/map")
			if lean := <-took; lean != tc.lean {
				t.Errorf("WriteHeaderFields took it: %v, want %v", lean, tc.lean)
			}
			if got.StatusCode != want.StatusCode || got.ContentLength != want.ContentLength || gotBody != wantBody ||
				!reflect.DeepEqual(got.Header, want.Header) {
				t.Errorf("from the list: %d len %d %q %v\nfrom the map:  %d len %d %q %v",
					got.StatusCode, got.ContentLength, gotBody, got.Header, want.StatusCode, want.ContentLength, wantBody, want.Header)
			}
		})
	}
}
