package cdn

import (
	"github.com/outpost-edge/outpost/cdn/store"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A body file removed, cut short or replaced with a symlink behind the
// store's back is never served: the request goes to the origin, the entry
// is dropped, and the next request fills it again.
func TestBrokenBodyFileRefetched(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	for _, tc := range []struct {
		name   string
		size   int // above memory_body_max (256KiB): served from the file
		damage func(t *testing.T, path string, size int)
	}{
		{"missing", 300 << 10, func(t *testing.T, p string, _ int) { os.Remove(p) }},
		{"truncated", 300 << 10, func(t *testing.T, p string, n int) { os.Truncate(p, int64(n/2)) }},
		{"symlink out of the cache", 300 << 10, func(t *testing.T, p string, n int) {
			os.WriteFile(outside, []byte(strings.Repeat("S", n)), 0o600)
			os.Remove(p)
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink, memory tier", 1000, func(t *testing.T, p string, n int) {
			os.WriteFile(outside, []byte(strings.Repeat("S", n)), 0o600)
			os.Remove(p)
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Repeat("b", tc.size)
			e := newEnv(t, static(body, "Cache-Control: max-age=600", "Content-Type: application/octet-stream"))
			if r := e.get("/x"); r.body != body {
				t.Fatal("first response wrong")
			}
			// The object is committed after the client's last byte.
			waitFor(t, "stored", func() bool { return e.cache.Objects() == 1 })
			all := e.cache.store.Select(func(*store.Entry) bool { return true })
			if len(all) != 1 {
				t.Fatalf("%d entries stored", len(all))
			}
			tc.damage(t, all[0].Path(), tc.size)
			for i := range 3 {
				r := e.get("/x")
				if r.StatusCode != 200 || r.body != body {
					t.Fatalf("request %d after damage: status %d, %d bytes, want the origin's %d", i, r.StatusCode, len(r.body), len(body))
				}
			}
			if r := e.get("/x"); r.Header.Get("X-Cache") != "HIT" {
				t.Errorf("not cached again: X-Cache %q", r.Header.Get("X-Cache"))
			}
			if e.hits() > 3 {
				t.Errorf("origin hits %d: the broken entry was not dropped", e.hits())
			}
		})
	}
}
