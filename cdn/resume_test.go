package cdn

import (
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
)

// TestFollowerResumesWhenFillStops: a client following a coalesced fill
// whose disk write fails gets the rest of the body from the origin with a
// validated range request, as the leader gets it straight from the origin.
// Without a strong validator the follower's connection is cut instead:
// two halves of possibly different versions are never joined.
func TestFollowerResumesWhenFillStops(t *testing.T) {
	body := strings.Repeat("0123456789", 20000)
	lastMod := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		header string
		resume bool
	}{
		{"strong ETag", `ETag: "v1"`, true},
		{"Last-Modified well before Date", "Last-Modified: " + lastMod.Format(http.TimeFormat), true},
		{"weak ETag only", `ETag: W/"v1"`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			release := make(chan struct{})
			var (
				mu     sync.Mutex
				ranges []string
			)
			seen := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), ranges...) }
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				k, v, _ := strings.Cut(tc.header, ":")
				w.Header().Set(k, strings.TrimSpace(v))
				w.Header().Set("Cache-Control", "max-age=60")
				if rg := r.Header.Get("Range"); rg != "" {
					mu.Lock()
					ranges = append(ranges, rg+" / "+r.Header.Get("If-Range"))
					mu.Unlock()
					mod := time.Time{}
					if strings.HasPrefix(tc.header, "Last-Modified") {
						mod = lastMod
					}
					http.ServeContent(w, r, "", mod, strings.NewReader(body))
					return
				}
				w.Header().Set("Content-Length", "200000")
				io.WriteString(w, body[:30000])
				w.(http.Flusher).Flush()
				close(started)
				<-release
				io.WriteString(w, body[30000:])
			})
			e.cache.Close()
			e.open(Options{CreateTemp: func(dir, pattern string) (store.File, error) {
				f, err := os.CreateTemp(dir, pattern)
				return &faultFile{File: f, left: 50000}, err
			}})

			type result struct {
				body string
				err  error
			}
			fetch := func() (*http.Response, error) { return e.client.Get(e.front.URL + "/obj") }
			leader := make(chan result, 1)
			go func() {
				res, err := fetch()
				if err != nil {
					leader <- result{err: err}
					return
				}
				b, err := io.ReadAll(res.Body)
				res.Body.Close()
				leader <- result{string(b), err}
			}()
			<-started
			res, err := fetch() // returns once it follows the fill
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if cs := res.Header.Get("Cache-Status"); !strings.Contains(cs, "collapsed") {
				t.Fatalf("second client did not follow the fill: Cache-Status %q", cs)
			}
			close(release)
			got, ferr := io.ReadAll(res.Body)
			l := <-leader
			gotRanges := seen()
			if l.err != nil || l.body != body {
				t.Fatalf("leader: %d bytes, %v", len(l.body), l.err)
			}
			if tc.resume {
				if ferr != nil || string(got) != body {
					t.Fatalf("follower: %d bytes, %v; origin range requests %q", len(got), ferr, gotRanges)
				}
				if len(gotRanges) != 1 || !strings.HasPrefix(gotRanges[0], "bytes=") {
					t.Errorf("origin range requests %q, want one", gotRanges)
				}
				if n := e.metric("outpost_cache_origin_fetches_total", "kind", "resume"); n != 1 {
					t.Errorf("resume fetches = %v, want 1", n)
				}
				return
			}
			if ferr == nil || len(got) >= len(body) {
				t.Fatalf("follower without a strong validator: %d bytes, %v; want a cut connection", len(got), ferr)
			}
			if body[:len(got)] != string(got) {
				t.Fatal("follower got bytes that are not the object's")
			}
			if len(gotRanges) != 0 {
				t.Errorf("resumed without a strong validator: %q", gotRanges)
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in                string
		first, last, size int64
		ok                bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 50000-199999/200000", 50000, 199999, 200000, true},
		{"bytes 5-4/10", 0, 0, 0, false},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"bytes 0-9/*", 0, 0, 0, false},
		{"bytes */10", 0, 0, 0, false},
		{"items 0-9/10", 0, 0, 0, false},
		{"bytes -1-9/10", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tc := range tests {
		f, l, s, ok := parseContentRange(tc.in)
		if ok != tc.ok || f != tc.first || l != tc.last || s != tc.size {
			t.Errorf("parseContentRange(%q) = %d %d %d %v", tc.in, f, l, s, ok)
		}
	}
}
