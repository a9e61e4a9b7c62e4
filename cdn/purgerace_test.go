package cdn

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
)

// versioned is an origin whose object changes when version is bumped, as an
// operator updates the origin and then purges. Version 1 stalls mid-body
// until release is closed, after signalling started; only paths ending in
// "obj" stall.
func versioned(version *atomic.Int32, started, release chan struct{}) http.HandlerFunc {
	var once sync.Once
	return func(w http.ResponseWriter, r *http.Request) {
		v := version.Load()
		body := strings.Repeat(strconv.Itoa(int(v)), 100000)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, v))
		w.Header().Set("Surrogate-Key", "obj")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body[:30000])
		w.(http.Flusher).Flush()
		if v == 1 && started != nil && strings.HasSuffix(r.URL.Path, "obj") {
			once.Do(func() { close(started) })
			<-release
		}
		io.WriteString(w, body[30000:])
	}
}

// TestHardPurgeDuringFill: a hard purge (by URL, prefix, tag or all) that
// lands while the object is streaming to disk, with a coalesced follower
// reading the growing temp file, must not leave the pre-purge body to be
// served afterwards. It used to be stored "already stale", so the next
// request got the purged body (X-Cache STALE) while a refresh ran.
func TestHardPurgeDuringFill(t *testing.T) {
	cases := []struct {
		name string
		req  func(base string) PurgeRequest
	}{
		{"url", func(b string) PurgeRequest { return PurgeRequest{URLs: []string{b + "/p/obj"}} }},
		{"prefix", func(b string) PurgeRequest { return PurgeRequest{Prefixes: []string{b + "/p/"}} }},
		{"tag", func(string) PurgeRequest { return PurgeRequest{Tags: []string{"obj"}} }},
		{"all", func(string) PurgeRequest { return PurgeRequest{All: true} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var version atomic.Int32
			version.Store(1)
			started, release := make(chan struct{}), make(chan struct{})
			e := newEnv(t, versioned(&version, started, release))
			var wg sync.WaitGroup
			bodies := make([]string, 2)
			for i := range bodies {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := e.client.Get(e.front.URL + "/p/obj")
					if err != nil {
						t.Error(err)
						return
					}
					defer res.Body.Close()
					b, _ := io.ReadAll(res.Body)
					bodies[i] = string(b)
				}()
				if i == 0 {
					<-started // the second request follows the first's fill
				}
			}
			waitFor(t, "follower", func() bool { return e.metric("outpost_cache_coalesced_total") == 1 })
			version.Store(2)
			if _, err := e.cache.Purge(t.Context(), tc.req(e.front.URL)); err != nil {
				t.Fatal(err)
			}
			close(release)
			wg.Wait()
			for i, b := range bodies {
				if b != strings.Repeat("1", 100000) {
					t.Fatalf("client %d: %d bytes, not the whole body it started", i, len(b))
				}
			}
			r := e.get("/p/obj")
			if r.body != strings.Repeat("2", 100000) {
				t.Fatalf("after a hard purge: X-Cache %q, the purged body served", r.Header.Get("X-Cache"))
			}
		})
	}
}

// gatedFile blocks Close (the last step before the body is renamed into
// place and published) until open is closed.
type gatedFile struct {
	*os.File
	closing chan struct{}
	open    chan struct{}
}

func (g *gatedFile) Close() error {
	close(g.closing)
	<-g.open
	return g.File.Close()
}

// TestPurgeDuringCommit: a hard purge that runs after the fill checked for
// purges but before its entry is published must still remove it. The purge
// used to find nothing to remove and the fill then published the pre-purge
// body as fresh.
func TestPurgeDuringCommit(t *testing.T) {
	var version atomic.Int32
	version.Store(1)
	e := newEnv(t, versioned(&version, nil, nil))
	e.cache.Close()
	closing, open := make(chan struct{}), make(chan struct{})
	var gated atomic.Bool
	e.open(Options{CreateTemp: func(dir, pattern string) (store.File, error) {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil || !gated.CompareAndSwap(false, true) {
			return f, err
		}
		return &gatedFile{File: f, closing: closing, open: open}, nil
	}})
	done := make(chan resp, 1)
	go func() { done <- e.get("/obj") }()
	<-closing
	version.Store(2)
	purged := make(chan error, 1)
	go func() {
		_, err := e.cache.Purge(t.Context(), PurgeRequest{URLs: []string{e.front.URL + "/obj"}})
		purged <- err
	}()
	// Give the purge time to run (or to wait for the commit): either
	// order must end with the new body.
	time.Sleep(20 * time.Millisecond)
	close(open)
	if err := <-purged; err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.body != strings.Repeat("1", 100000) {
		t.Fatalf("first client: %d bytes", len(r.body))
	}
	if r := e.get("/obj"); r.body != strings.Repeat("2", 100000) {
		t.Fatalf("after a hard purge: X-Cache %q, the purged body served", r.Header.Get("X-Cache"))
	}
}

// TestSoftPurgeRacingCompression: a client's first compressed rendition
// committed while a soft purge is working through its selection must not
// undo the purge. The rendition replaced the selected entry with a copy
// that was not invalidated, and the purge skipped it as changed meanwhile.
// (Each invalidation is an index write, so a purge of many entries takes a
// while; a hard purge has the same gap between selecting and removing.)
func TestSoftPurgeRacingCompression(t *testing.T) {
	e := newEnv(t, static("fetched", "Cache-Control: no-store"))
	u := strings.TrimPrefix(e.front.URL, "http://")
	body := strings.Repeat("compress me ", 200)
	const n = 16
	for i := 0; i < n; i++ {
		w, err := e.cache.store.Create()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		now := e.clock.Now()
		if _, err := w.Commit(store.Meta{
			Key: "http://" + u + "/z/" + strconv.Itoa(i), Status: 200, Compressible: true,
			Header:      http.Header{"Content-Type": {"text/plain"}},
			RequestTime: now, ResponseTime: now, Lifetime: time.Hour,
		}); err != nil {
			t.Fatal(err)
		}
	}
	purged := make(chan PurgeResult, 1)
	go func() {
		res, err := e.cache.Purge(t.Context(), PurgeRequest{All: true, Soft: true})
		if err != nil {
			t.Error(err)
		}
		purged <- res
	}()
	for i := 0; i < n; i++ {
		e.get("/z/"+strconv.Itoa(i), "Accept-Encoding: gzip")
	}
	if res := <-purged; res.Purged != n {
		t.Errorf("purge reports %d of %d entries", res.Purged, n)
	}
	for _, x := range e.cache.store.Select(func(*store.Entry) bool { return true }) {
		if !x.Invalidated {
			t.Errorf("%s: still fresh after a soft purge of everything", x.Key)
		}
	}
}
