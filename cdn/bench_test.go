package cdn

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// discardWriter is a minimal ResponseWriter so the benchmark measures the
// cache's own work and allocations, not a recorder's.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(io.Discard, r)
}

func benchHit(b *testing.B, size int) {
	e := newEnv(b, static(strings.Repeat("x", size), "Cache-Control: max-age=3600", "Content-Type: application/octet-stream"))
	e.get("/obj")
	h := *e.h.Load()
	req := httptest.NewRequest("GET", "http://bench.example/obj", nil)
	req.Host = e.front.Listener.Addr().String()
	req = req.WithContext(reqinfo.With(req.Context(), &reqinfo.Info{}))
	w := &discardWriter{h: make(http.Header, 16)}
	h.ServeHTTP(w, req)
	if w.h.Get("X-Cache") != "HIT" {
		b.Fatalf("not a hit: %v", w.h)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: make(http.Header, 16)}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	})
}

// BenchmarkHit1KiB and BenchmarkHit100KiB measure the hit path in process
// (lookup, freshness, headers, body from the memory tier).
func BenchmarkHit1KiB(b *testing.B)   { benchHit(b, 1<<10) }
func BenchmarkHit100KiB(b *testing.B) { benchHit(b, 100<<10) }

// BenchmarkHit1MiB is above memory_body_max: the body comes from its file.
func BenchmarkHit1MiB(b *testing.B) { benchHit(b, 1<<20) }

// BenchmarkHitHTTP measures a 1 KiB hit over a real socket with keep-alive.
func BenchmarkHitHTTP(b *testing.B) {
	e := newEnv(b, static(strings.Repeat("x", 1024), "Cache-Control: max-age=3600"))
	e.get("/obj")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := e.client.Get(e.front.URL + "/obj")
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	})
}
