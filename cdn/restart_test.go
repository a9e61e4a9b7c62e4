package cdn

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// countFiles returns the regular files under dir.
func countFiles(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestRestartDuringFill: the store closes and reopens (a restart) while a
// fill is streaming; the fill's client still gets the whole body, and the
// reopened store neither serves a half object nor keeps records and files
// that disagree.
func TestRestartDuringFill(t *testing.T) {
	var version atomic.Int32
	version.Store(1)
	started, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, versioned(&version, started, release))
	done := make(chan resp, 1)
	go func() { done <- e.get("/obj") }()
	<-started
	old := e.cache
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	e.open(Options{}) // the front now uses the reopened cache
	if r := e.get("/other"); r.StatusCode != 200 {
		t.Fatalf("reopened cache: %d", r.StatusCode)
	}
	close(release)
	if r := <-done; r.body != strings.Repeat("1", 100000) {
		t.Fatalf("client of the interrupted fill: %d bytes", len(r.body))
	}
	if r := e.get("/obj"); r.body != strings.Repeat("1", 100000) {
		t.Fatalf("after restart: %q %d bytes", r.Header.Get("X-Cache"), len(r.body))
	}
	// The client has its body before the fill commits: wait for the fill
	// to end, as a graceful shutdown waits for its handlers.
	waitFor(t, "fills done", func() bool {
		e.cache.fillMu.Lock()
		defer e.cache.fillMu.Unlock()
		return len(e.cache.fills) == 0
	})
	e.cache.Close()
	e.open(Options{})
	if files := countFiles(filepath.Join(e.cfg.Dir, "objects")); files != e.cache.Objects() {
		t.Fatalf("%d body files for %d entries", files, e.cache.Objects())
	}
	if r := e.get("/obj"); r.Header.Get("X-Cache") != "HIT" || r.body != strings.Repeat("1", 100000) {
		t.Fatalf("second restart: %q %q %d bytes, %d entries", r.Header.Get("X-Cache"), r.Header.Get("Cache-Status"), len(r.body), e.cache.Objects())
	}
}

// TestEvictionWhileServing: an entry evicted for space while a slow client
// is still reading it from its file (sendfile) is delivered whole.
func TestEvictionWhileServing(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(bytes.Repeat([]byte(r.URL.Path[1:2]), 3<<19))
	}, withConfig(func(c *Config) {
		c.MaxSize = 8 << 20
		c.Eviction = "lru" // S3-FIFO would drop the one-hit fills instead
	}))
	e.get("/a")
	res, err := e.client.Get(e.front.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("X-Cache %q", res.Header.Get("X-Cache"))
	}
	head := make([]byte, 4096)
	if _, err := io.ReadFull(res.Body, head); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8 && len(e.cache.store.Variants("http://"+strings.TrimPrefix(e.front.URL, "http://")+"/a")) > 0; i++ {
		e.get("/" + strconv.Itoa(i))
	}
	if len(e.cache.store.Variants("http://"+strings.TrimPrefix(e.front.URL, "http://")+"/a")) > 0 {
		t.Fatal("not evicted")
	}
	rest, err := io.ReadAll(res.Body)
	if err != nil || !bytes.Equal(append(head, rest...), bytes.Repeat([]byte("a"), 3<<19)) {
		t.Fatalf("evicted while served: %d bytes, %v", len(head)+len(rest), err)
	}
}
