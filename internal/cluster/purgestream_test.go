package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-edge/outpost/internal/redistest"
)

// streamNode is one node's end of the purge stream, with what it applied.
type streamNode struct {
	name  string
	s     *PurgeStream
	pos   string
	mu    sync.Mutex
	got   []string
	fail  error
	hang  chan struct{} // when set, apply waits for its context to end, closing hang first
	stop  context.CancelFunc
	done  chan struct{}
	rdb   redis.UniversalClient
	peers []string
}

func newStreamNode(t *testing.T, rdb redis.UniversalClient, name string, peers []string, dir string) *streamNode {
	t.Helper()
	n := &streamNode{name: name, rdb: rdb, peers: peers, pos: filepath.Join(dir, name+".pos")}
	n.s = n.build(nil)
	return n
}

func (n *streamNode) build(fallback *Fanout) *PurgeStream {
	s := NewPurgeStream(n.rdb, n.name, n.peers, n.pos, func(ctx context.Context, body []byte) (json.RawMessage, error) {
		n.mu.Lock()
		if h := n.hang; h != nil {
			n.hang = nil
			n.mu.Unlock()
			close(h)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		defer n.mu.Unlock()
		if n.fail != nil {
			return nil, n.fail
		}
		n.got = append(n.got, string(body))
		return json.RawMessage(`{"purged":1,"applied_by":"` + n.name + `"}`), nil
	}, fallback, nil)
	s.Block = 100 * time.Millisecond
	s.AckWait = 3 * time.Second
	return s
}

func (n *streamNode) start(t *testing.T) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	n.stop, n.done = stop, make(chan struct{})
	go func() { defer close(n.done); n.s.Run(ctx) }()
	t.Cleanup(n.halt)
	// Running once it has a position and says it reads.
	waitFor(t, "node "+n.name+" to read the stream", func() bool {
		_, err := os.Stat(n.pos)
		return err == nil && n.rdb.Exists(context.Background(), n.s.aliveKey(n.name)).Val() == 1
	})
}

// restart starts n again with a new PurgeStream; its position file stays.
func (n *streamNode) restart(t *testing.T) {
	t.Helper()
	n.s = n.build(nil)
	n.start(t)
}

// pairOnRedis returns nodes a and b, each the other's peer, on a new
// redis-server.
func pairOnRedis(t *testing.T) (*redistest.Server, *streamNode, *streamNode) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	dir := t.TempDir()
	return srv, newStreamNode(t, rdb, "a", []string{"b"}, dir), newStreamNode(t, rdb, "b", []string{"a"}, dir)
}

func (n *streamNode) halt() {
	if n.stop != nil {
		n.stop()
		<-n.done
		n.stop = nil
	}
}

func (n *streamNode) applied() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Three nodes on one Redis: a purge sent by one is applied once by each
// other node, never by the sender, and each answer reaches the sender.
func TestPurgeStreamDelivers(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	dir := t.TempDir()
	nodes := map[string]*streamNode{}
	for _, name := range []string{"a", "b", "c"} {
		var peers []string
		for _, p := range []string{"a", "b", "c"} {
			if p != name {
				peers = append(peers, p)
			}
		}
		nodes[name] = newStreamNode(t, rdb, name, peers, dir)
		nodes[name].start(t)
	}
	for i, body := range []string{`{"urls":["http://x/1"]}`, `{"tags":["t"]}`} {
		res := nodes["a"].s.Send(context.Background(), PurgePath, []byte(body))
		if len(res) != 2 {
			t.Fatalf("purge %d: answers %v, want b and c", i, res)
		}
		for _, peer := range []string{"b", "c"} {
			r := res[peer]
			if r.Error != "" || r.Queued || !strings.Contains(string(r.Result), `"applied_by":"`+peer+`"`) {
				t.Errorf("purge %d: %s answered %+v", i, peer, r)
			}
		}
	}
	want := []string{`{"urls":["http://x/1"]}`, `{"tags":["t"]}`}
	for _, name := range []string{"b", "c"} {
		if got := nodes[name].applied(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s applied %q, want %q", name, got, want)
		}
	}
	if got := nodes["a"].applied(); len(got) != 0 {
		t.Errorf("the sender applied its own purges again: %q", got)
	}
	if n := nodes["b"].s.applied.Load(); n != 2 {
		t.Errorf("b counted %d applied, want 2", n)
	}
	// Only purges travel on the stream.
	res := nodes["a"].s.Send(context.Background(), "/v1/keys", []byte(`{}`))
	if res["b"].Error == "" {
		t.Errorf("a non-purge operation went on the stream: %+v", res)
	}
}

// A node that was down when a purge was sent applies it when it comes
// back, from its saved position, even though the sender is gone; it does
// not apply it twice after another restart. A node with no saved position
// starts at the stream's end.
func TestPurgeStreamCatchUp(t *testing.T) {
	_, a, b := pairOnRedis(t)
	b.start(t)
	b.halt()

	a.s.AckWait = 300 * time.Millisecond
	res := a.s.Send(context.Background(), PurgePath, []byte(`{"prefixes":["http://x/static/"]}`))
	if r := res["b"]; !r.Queued || !strings.Contains(r.Error, "not reading the stream now") {
		t.Fatalf("b was down, answer %+v, want queued", r)
	}
	// The sender is gone too: b catches up from Redis alone.
	b.restart(t)
	waitFor(t, "b to apply the purge it missed", func() bool { return len(b.applied()) == 1 })
	b.halt()
	b.restart(t)
	a.s.AckWait = 3 * time.Second
	a.s.Send(context.Background(), PurgePath, []byte(`{"all":true}`)) // answered: b read past the first
	if got := b.applied(); len(got) != 2 || got[1] != `{"all":true}` {
		t.Errorf("b applied %q, want the missed purge once, then the new one", got)
	}

	// A new node: what was purged before it existed is not for it.
	c := newStreamNode(t, b.rdb, "c", []string{"a"}, t.TempDir())
	c.start(t)
	time.Sleep(3 * c.s.Block)
	if got := c.applied(); len(got) != 0 {
		t.Errorf("a new node applied purges from before it started: %q", got)
	}
}

// A node stopped while it applies a purge applies it again when it is
// back, rather than counting it as answered.
func TestPurgeStreamStopMidPurge(t *testing.T) {
	_, a, b := pairOnRedis(t)
	a.s.AckWait = 200 * time.Millisecond
	applying := make(chan struct{})
	b.hang = applying
	b.start(t)
	go a.s.Send(context.Background(), PurgePath, []byte(`{"tags":["t"]}`))
	<-applying
	b.halt()
	if got := b.applied(); len(got) != 0 {
		t.Fatalf("applied %q while stopping", got)
	}
	b.restart(t)
	waitFor(t, "b to apply the purge it was stopped in", func() bool { return len(b.applied()) == 1 })
}

// A node whose unread purges were trimmed from the stream purges its
// caches whole, once, then reads on; a stream recreated behind its position
// (Redis restarted without persistence) is read from its start.
func TestPurgeStreamGapAndReset(t *testing.T) {
	srv, a, b := pairOnRedis(t)
	rdb := a.rdb
	a.s.AckWait = 50 * time.Millisecond
	b.start(t)
	b.halt()
	for range 5 {
		a.s.Send(context.Background(), PurgePath, []byte(`{"urls":["http://x/old"]}`))
	}
	if err := rdb.XTrimMaxLen(context.Background(), a.s.Key, 2).Err(); err != nil {
		t.Fatal(err)
	}
	b.restart(t)
	waitFor(t, "b to notice the gap", func() bool { return b.s.gaps.Load() == 1 })
	a.s.AckWait = 3 * time.Second
	if r := a.s.Send(context.Background(), PurgePath, []byte(`{"urls":["http://x/new"]}`))["b"]; r.Error != "" {
		t.Fatalf("after the gap: %+v", r)
	}
	got := b.applied()
	old := `{"urls":["http://x/old"]}`
	if strings.Join(got, "|") != `{"all":true}|`+old+`|`+old+`|{"urls":["http://x/new"]}` {
		t.Errorf("b applied %q, want a whole purge for the gap, the 2 entries left after it, then the new purge", got)
	}

	// Redis comes back empty: b's position is ahead of the new stream.
	srv.Stop()
	srv.Restart()
	before := len(b.applied())
	waitFor(t, "a purge to reach b through the new stream", func() bool {
		r := a.s.Send(context.Background(), PurgePath, []byte(`{"tags":["after-restart"]}`))["b"]
		return r.Error == ""
	})
	got = b.applied()
	if len(got) <= before || got[len(got)-1] != `{"tags":["after-restart"]}` {
		t.Errorf("after the Redis restart b applied %q", got[before:])
	}
}

// An entry a node cannot apply is answered with the error; Redis down
// sends the purge through the fallback fan-out, or reports it undelivered.
func TestPurgeStreamFailures(t *testing.T) {
	srv, a, b := pairOnRedis(t)
	b.fail = errors.New("disk on fire")
	b.start(t)
	if r := a.s.Send(context.Background(), PurgePath, []byte(`{"all":true}`))["b"]; r.Error != "disk on fire" || r.Queued {
		t.Errorf("b could not apply: answer %+v", r)
	}

	var pushed []string
	var mu sync.Mutex
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		pushed = append(pushed, r.URL.Path+" from "+r.Header.Get(FanoutHeader))
		mu.Unlock()
		w.Write([]byte(`{"purged":3}`))
	}))
	defer peer.Close()
	fan, err := NewFanout("a", []Peer{{Name: "b", Admin: peer.URL}}, "tok", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fan.Close()
	srv.Stop()
	waitFor(t, "b to count its failed reads", func() bool { return b.s.readErrors.Load() > 0 })
	withFallback := a.build(fan)
	if r := withFallback.Send(context.Background(), PurgePath, []byte(`{"all":true}`))["b"]; r.Error != "" || string(r.Result) != `{"purged":3}` {
		t.Errorf("Redis down, fallback answer %+v", r)
	}
	if len(pushed) != 1 || pushed[0] != "/v1/purge from a" {
		t.Errorf("fallback pushed %q", pushed)
	}
	if r := a.s.Send(context.Background(), PurgePath, []byte(`{"all":true}`))["b"]; !strings.HasPrefix(r.Error, "redis: ") || r.Queued {
		t.Errorf("Redis down, no fallback: answer %+v", r)
	}
}

func TestStreamIDOrder(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"1-0", "2-0", true},
		{"2-0", "1-0", false},
		{"5-1", "5-2", true},
		{"5-2", "5-2", false},
		{"10-0", "9-99", false},
		{"0-0", "0-0", false},
		{"junk", "0-1", true},
		{"0-1", "junk", false},
	} {
		if got := idLess(c.a, c.b); got != c.less {
			t.Errorf("idLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
}
