package cdn

import (
	"testing"
)

func TestBasicHitMiss(t *testing.T) {
	e := newEnv(t, static("hello", "Cache-Control: max-age=60", "Content-Type: text/plain"))
	r := e.get("/a")
	if r.StatusCode != 200 || r.body != "hello" || r.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("first: %d %q %q", r.StatusCode, r.body, r.Header.Get("X-Cache"))
	}
	r = e.get("/a")
	if r.body != "hello" || r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("second: %q %q %v", r.body, r.Header.Get("X-Cache"), r.Header)
	}
	if e.hits() != 1 {
		t.Fatalf("origin hits %d", e.hits())
	}
	t.Log(r.Header)
}
