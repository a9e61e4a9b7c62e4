package cdn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

func TestRestartKeepsCache(t *testing.T) {
	e := newEnv(t, static(strings.Repeat("p", 3000), "Cache-Control: max-age=600", "Content-Type: text/plain"))
	e.get("/keep")
	e.get("/keep", "Accept-Encoding: gzip") // a stored rendition survives too
	e.cache.Close()
	e.open(Options{})
	for _, ae := range []string{"", "gzip"} {
		var hdr []string
		if ae != "" {
			hdr = append(hdr, "Accept-Encoding: "+ae)
		}
		r := e.get("/keep", hdr...)
		if r.Header.Get("X-Cache") != "HIT" || decode(t, ae, r.body) != strings.Repeat("p", 3000) {
			t.Fatalf("after restart (%q): %q", ae, r.Header.Get("X-Cache"))
		}
	}
	if e.hits() != 1 {
		t.Fatalf("origin hits %d", e.hits())
	}
}

// The kill -9 test re-executes the test binary as a child that fills the
// cache with a large object and is SIGKILLed mid-write.
const childEnv = "OUTPOST_CDN_KILL_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		killChild(dir)
		return
	}
	os.Exit(m.Run())
}

// childConfig admits the 1 GiB /big: with the default max_object_size
// (max_size/4) it would be passed through unstored and the kill would
// interrupt no write at all.
func childConfig(dir string) Config {
	cfg := Config{Dir: dir, MaxSize: 1 << 30, MaxObjectSize: 1 << 30}
	cfg.SetDefaults()
	return cfg
}

// killChild stores /small completely, then streams /big slowly until killed.
func killChild(dir string) {
	c, err := New(childConfig(dir), Options{})
	if err != nil {
		panic(err)
	}
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Path == "/small" {
			io.WriteString(w, "small")
			return
		}
		w.Header().Set("Content-Length", "1073741824")
		buf := make([]byte, 256<<10)
		for i := 0; i < 4096; i++ {
			if _, err := w.Write(buf); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}))
	up := proxyTo(org.URL)
	h := c.Handler("child", RouteConfig{}, up)
	front := httptest.NewServer(h)
	for _, p := range []string{"/small", "/big"} {
		req, _ := http.NewRequest("GET", front.URL+p, nil)
		req.Host = "example.test"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		if p == "/small" {
			io.ReadAll(res.Body)
			res.Body.Close()
			os.Stdout.WriteString("SMALL\n")
			continue
		}
		n := 0
		buf := make([]byte, 64<<10)
		announced := false
		for {
			m, err := res.Body.Read(buf)
			n += m
			if n > 16<<20 && !announced {
				os.Stdout.WriteString("WRITING\n")
				announced = true
			}
			if err != nil {
				break
			}
		}
	}
	select {} // wait to be killed
}

func TestKill9DuringLargeWrite(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	seen := map[string]bool{}
	for sc.Scan() {
		seen[sc.Text()] = true
		if sc.Text() == "WRITING" {
			break
		}
	}
	if !seen["SMALL"] || !seen["WRITING"] {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not reach the large write: %v", seen)
	}
	// The temp body is partly written right now: prove it, or the kill
	// interrupts nothing and the checks below prove nothing.
	tmps, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil || len(tmps) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no body being written at the kill: %d temp files, %v", len(tmps), err)
	}
	if fi, err := tmps[0].Info(); err != nil || fi.Size() == 0 || fi.Size() >= 1<<30 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("temp body not partial at the kill: %v %v", fi, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	var reopened atomic.Int64
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reopened.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "fresh "+r.URL.Path)
	}))
	defer org.Close()
	c, err := New(childConfig(dir), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.Handler("parent", RouteConfig{}, proxyTo(org.URL))
	get := func(p string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "http://example.test"+p, nil)
		req = req.WithContext(reqinfo.With(req.Context(), &reqinfo.Info{}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if r := get("/small"); r.Header().Get("X-Cache") != "HIT" || r.Body.String() != "small" {
		t.Fatalf("small after kill: %q %q", r.Header().Get("X-Cache"), r.Body.String())
	}
	if r := get("/big"); r.Header().Get("X-Cache") != "MISS" || r.Body.String() != "fresh /big" {
		t.Fatalf("big after kill: %q %d bytes", r.Header().Get("X-Cache"), r.Body.Len())
	}
	if c.Objects() != 2 {
		t.Fatalf("objects %d", c.Objects())
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("temp files left: %d", len(ents))
	}
}

func proxyTo(u string) http.Handler {
	e := &env{}
	e.origin = &origin{srv: &httptest.Server{URL: u}}
	return e.upstream()
}

// faultFile fails writes after limit bytes, like a full disk.
type faultFile struct {
	*os.File
	left int64
}

func (f *faultFile) Write(p []byte) (int, error) {
	if int64(len(p)) > f.left {
		n, _ := f.File.Write(p[:f.left])
		f.left = 0
		return n, syscall.ENOSPC
	}
	f.left -= int64(len(p))
	return f.File.Write(p)
}

func TestDiskFullServesFromOrigin(t *testing.T) {
	body := strings.Repeat("d", 200000)
	cases := []struct {
		name string
		ct   func(dir, pattern string) (store.File, error)
		op   string
	}{
		{"write fails midway", func(dir, pattern string) (store.File, error) {
			f, err := os.CreateTemp(dir, pattern)
			return &faultFile{File: f, left: 50000}, err
		}, "write"},
		{"create fails", func(dir, pattern string) (store.File, error) {
			return nil, &fs.PathError{Op: "open", Path: dir, Err: syscall.ENOSPC}
		}, "create"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, static(body, "Cache-Control: max-age=60"))
			e.cache.Close()
			var logs logCapture
			e.open(Options{CreateTemp: tc.ct, Logger: logs.logger()})
			for i := 1; i <= 2; i++ {
				r := e.get("/full")
				if r.StatusCode != 200 || r.body != body || r.Header.Get("X-Cache") != "MISS" {
					t.Fatalf("request %d: %d %d %q", i, r.StatusCode, len(r.body), r.Header.Get("X-Cache"))
				}
				if got := e.metric("outpost_cache_io_errors_total", "op", tc.op); got != float64(i) {
					t.Fatalf("io errors %v, want %d", got, i)
				}
				// The operator also learns why: one error line per
				// failure, naming the operation and the disk error.
				recs := logs.records(t, "cache store error; serving uncached")
				if len(recs) != i {
					t.Fatalf("%d store error lines, want %d", len(recs), i)
				}
				rec := recs[i-1]
				if rec["level"] != "ERROR" || rec["op"] != tc.op || !strings.Contains(fmt.Sprint(rec["err"]), syscall.ENOSPC.Error()) {
					t.Fatalf("store error line: %v", rec)
				}
			}
			// A range request (which waits for the stored body) also
			// falls back to the origin.
			r := e.get("/full", "Range: bytes=0-9")
			if r.StatusCode != 206 && r.StatusCode != 200 {
				t.Fatalf("range: %d", r.StatusCode)
			}
			if e.cache.Objects() != 0 {
				t.Fatal("stored despite failure")
			}
		})
	}
}

func TestEvictionUnderSizeLimit(t *testing.T) {
	for _, pol := range []string{"s3fifo", "lru"} {
		t.Run(pol, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.Write(make([]byte, 100<<10))
			}, withConfig(func(c *Config) {
				c.MaxSize = 1 << 20
				c.Eviction = pol
			}))
			for i := 0; i < 30; i++ {
				e.get("/o" + string(rune('a'+i)))
				if e.cache.Bytes() > 1<<20 {
					t.Fatalf("over the limit: %d", e.cache.Bytes())
				}
			}
			if e.cache.Objects() > 10 || e.metric("outpost_cache_evictions_total") < 20 {
				t.Fatalf("objects %d evictions %v", e.cache.Objects(), e.metric("outpost_cache_evictions_total"))
			}
			files := 0
			filepath.WalkDir(filepath.Join(e.cfg.Dir, "objects"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files++
				}
				return nil
			})
			if int64(files) != e.cache.Objects() {
				t.Fatalf("%d files for %d objects", files, e.cache.Objects())
			}
		})
	}
}

func TestObjectLimit(t *testing.T) {
	e := newEnv(t, static("x", "Cache-Control: max-age=600"), withConfig(func(c *Config) { c.MaxObjects = 5 }))
	for i := 0; i < 12; i++ {
		e.get("/n" + string(rune('a'+i)))
	}
	if e.cache.Objects() != 5 {
		t.Fatalf("objects %d", e.cache.Objects())
	}
}

// TestNoRequestBecomesAPath: hostile paths and hosts only ever produce
// hashed file names inside the cache directory.
func TestNoRequestBecomesAPath(t *testing.T) {
	e := newEnv(t, static("x", "Cache-Control: max-age=600"))
	for _, p := range []string{"/../../etc/passwd", "/%2e%2e/%2e%2e/x", "/a/..%2f..%2fb", "/" + strings.Repeat("a", 300), "/x?../../y"} {
		e.get(p)
	}
	e.get("/h", "Host: ..")
	e.get("/h", "Host: a/../../b")
	name := regexp.MustCompile(`^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}\.[a-z]+\.[0-9a-f]+$`)
	root := e.cfg.Dir
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "index.db" {
			return nil
		}
		obj, ok := strings.CutPrefix(filepath.ToSlash(rel), "objects/")
		if !ok || !name.MatchString(obj) {
			t.Errorf("unexpected file %q", rel)
		}
		return nil
	})
	if e.cache.Objects() < 5 {
		t.Fatalf("objects %d", e.cache.Objects())
	}
}

// TestUnsafeInvalidatesLocation: a successful unsafe request invalidates
// its URL and the URLs in Location and Content-Location, on the same host
// only (RFC 9111 §4.4).
func TestUnsafeInvalidatesLocation(t *testing.T) {
	// Stored objects, each as the request that fetches it.
	objects := map[string][]string{
		"self":  {"/items"},
		"loc":   {"/items/1"},
		"cloc":  {"/items/3"},
		"other": {"/items/2", "Host: other.example"},
	}
	cases := []struct {
		name   string
		status int
		hdr    []string // of the POST response; {host} is the request's host
		gone   []string // objects invalidated; the others stay
	}{
		{"Location same host", 201, []string{"Location: /items/1"}, []string{"self", "loc"}},
		{"Content-Location same host", 200, []string{"Content-Location: /items/3"}, []string{"self", "cloc"}},
		{"Content-Location absolute same host", 200, []string{"Content-Location: http://{host}/items/3"}, []string{"self", "cloc"}},
		{"Content-Location other host", 201, []string{"Location: /items/1", "Content-Location: http://other.example/items/2"}, []string{"self", "loc"}},
		{"error response invalidates nothing", 403, []string{"Location: /items/1", "Content-Location: /items/3"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == "POST" {
					for _, h := range tc.hdr {
						k, v, _ := strings.Cut(h, ":")
						w.Header().Set(k, strings.ReplaceAll(strings.TrimSpace(v), "{host}", r.Host))
					}
					w.WriteHeader(tc.status)
					return
				}
				w.Header().Set("Cache-Control", "max-age=600")
				io.WriteString(w, r.URL.Path)
			})
			for _, req := range objects {
				e.get(req[0], req[1:]...)
			}
			e.do("POST", "/items")
			for name, req := range objects {
				want := "HIT"
				if slices.Contains(tc.gone, name) {
					want = "MISS"
				}
				if r := e.get(req[0], req[1:]...); r.Header.Get("X-Cache") != want {
					t.Errorf("%s %v: %q, want %q", name, req, r.Header.Get("X-Cache"), want)
				}
			}
		})
	}
}

var _ = errors.New
