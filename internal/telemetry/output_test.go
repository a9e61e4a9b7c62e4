package telemetry

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// writes records each Write the output makes.
type writes struct {
	mu    sync.Mutex
	calls []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

func (w *writes) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

func TestOutput(t *testing.T) {
	type step struct {
		access bool // else direct
		line   string
	}
	cases := []struct {
		name  string
		size  int
		steps []step
		flush bool
		want  []string // the writes made
	}{
		{"gathered until a process line, which goes out after them", 1 << 10,
			[]step{{true, "a1\n"}, {true, "a2\n"}, {false, "p1\n"}, {true, "a3\n"}},
			false, []string{"a1\na2\n", "p1\n"}},
		{"written when size is reached", 6,
			[]step{{true, "a1\n"}, {true, "a2\n"}, {true, "a3\n"}},
			false, []string{"a1\na2\n"}},
		{"Flush writes what is pending", 1 << 10,
			[]step{{true, "a1\n"}, {true, "a2\n"}},
			true, []string{"a1\na2\n"}},
		{"size 0: every line at once", 0,
			[]step{{true, "a1\n"}, {true, "a2\n"}, {false, "p1\n"}},
			false, []string{"a1\n", "a2\n", "p1\n"}},
		{"nothing pending, nothing written", 1 << 10,
			[]step{{false, "p1\n"}},
			true, []string{"p1\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w writes
			o := NewOutput(&w, tc.size, time.Hour)
			for _, s := range tc.steps {
				dst := o.Direct()
				if s.access {
					dst = o.Access()
				}
				if n, err := dst.Write([]byte(s.line)); n != len(s.line) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s.line, n, err)
				}
			}
			if tc.flush {
				o.Flush()
			}
			if got := w.get(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("writes %q, want %q", got, tc.want)
			}
		})
	}
}

// A line left pending goes out within the interval without anything else
// happening.
func TestOutputInterval(t *testing.T) {
	var w writes
	o := NewOutput(&w, 1<<10, 20*time.Millisecond)
	o.Access().Write([]byte("a1\n"))
	deadline := time.Now().Add(10 * time.Second)
	for len(w.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a pending line was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := w.get(); len(got) != 1 || got[0] != "a1\n" {
		t.Fatalf("writes %q", got)
	}
	// And again for a line after that write: the timer is re-armed.
	o.Access().Write([]byte("a2\n"))
	for len(w.get()) == 1 {
		if time.Now().After(deadline) {
			t.Fatal("a second pending line was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Many writers at once, both kinds: every line arrives whole and once,
// every write is whole lines, and each writer's lines keep their order.
func TestOutputConcurrent(t *testing.T) {
	var w writes
	o := NewOutput(&w, 512, time.Millisecond)
	const writers, lines = 8, 300
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				dst := o.Access()
				if i%50 == 0 {
					dst = o.Direct()
				}
				fmt.Fprintf(dst, "w%d-%04d %s\n", g, i, strings.Repeat("x", i%40))
			}
		}()
	}
	wg.Wait()
	o.Flush()
	var all bytes.Buffer
	for _, c := range w.get() {
		if !strings.HasSuffix(c, "\n") {
			t.Fatalf("a write ends mid-line: %q", c)
		}
		all.WriteString(c)
	}
	next := make([]int, writers)
	for _, l := range strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(l, "w%d-%d", &g, &i); err != nil {
			t.Fatalf("mangled line %q", l)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines arrived, want %d", g, n, lines)
		}
	}
}

// NewLogs: the access log's request lines are gathered; its warnings and
// errors, and every process line, go out at once, after what is pending.
func TestNewLogs(t *testing.T) {
	var w writes
	o := NewOutput(&w, 1<<10, time.Hour)
	log, access := NewLogs(o, "info", "json")
	access.Info("request", "path", "/a")
	access.Debug("request", "path", "/below-level")
	if got := w.get(); len(got) != 0 {
		t.Fatalf("a request line went out at once: %q", got)
	}
	access.Error("handler panic", "request_id", "r1")
	got := w.get()
	if len(got) != 2 || !strings.Contains(got[0], `"path":"/a"`) || !strings.Contains(got[1], `"msg":"handler panic"`) {
		t.Fatalf("writes %q: want the pending request line, then the error", got)
	}
	for _, c := range got {
		if !strings.Contains(c, `"component":"access"`) {
			t.Errorf("no component in %q", c)
		}
	}
	log.Info("stopped")
	if got := w.get(); len(got) != 3 || strings.Contains(got[2], "component") {
		t.Fatalf("writes %q", got)
	}
}
