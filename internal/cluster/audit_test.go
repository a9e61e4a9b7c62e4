package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
)

// The tests run retry passes themselves, at the times they choose.
func init() { retryEvery = time.Hour }

// downAddr reserves a 127.0.0.1 address nothing listens on (yet).
func downAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// recorder is a peer's admin API that records the bodies it took, in order.
type recorder struct {
	mu     sync.Mutex
	bodies []string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, string(b))
	rc.mu.Unlock()
	io.WriteString(w, `{"purged":0}`)
}

func (rc *recorder) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bodies...)
}

// startAt serves h on addr (a peer coming back).
func startAt(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func newTestFanout(t *testing.T, path string, peers ...Peer) *Fanout {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "q.db")
	}
	f, err := NewFanout("self", peers, "tok", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A peer that is back takes its queued operations in the order they were
// made, even when a later one came due before an earlier one's backoff
// ran out: the later ones wait behind the head of the peer's queue.
func TestFanoutRetryKeepsPeerOrder(t *testing.T) {
	addr := downAddr(t)
	f := newTestFanout(t, "", Peer{"b", "http://" + addr})
	defer f.Close()
	now := time.Now()
	if res := f.Send(context.Background(), "/v1/purge", []byte(`{"tags":["one"]}`)); !res["b"].Queued {
		t.Fatalf("first: %+v", res["b"])
	}
	// A failed retry pushes "one" back (2s); "two" is made meanwhile.
	f.retryDue(now.Add(2 * time.Second))
	if res := f.Send(context.Background(), "/v1/purge", []byte(`{"tags":["two"]}`)); !res["b"].Queued {
		t.Fatalf("second: %+v", res["b"])
	}
	rc := &recorder{}
	startAt(t, addr, rc)
	// "two" is due now, "one" is not yet: nothing may overtake "one".
	f.retryDue(now.Add(2500 * time.Millisecond))
	if got := rc.got(); len(got) != 0 {
		t.Fatalf("delivered %q before the head of the queue", got)
	}
	f.retryDue(now.Add(time.Hour))
	if got := rc.got(); strings.Join(got, " ") != `{"tags":["one"]} {"tags":["two"]}` {
		t.Errorf("delivered %q, want one then two", got)
	}
	if f.Pending() != 0 {
		t.Errorf("pending %d", f.Pending())
	}
}

// A peer that accepts connections but never answers costs one timeout per
// retry pass, not one per queued operation, and does not hold up the
// retries of another peer that is back.
func TestFanoutSlowPeerDoesNotStallRetries(t *testing.T) {
	var hung atomic.Int32
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		<-release
	}))
	defer slow.Close()
	defer close(release)
	addr := downAddr(t)
	f := newTestFanout(t, "", Peer{"slow", slow.URL}, Peer{"back", "http://" + addr})
	defer f.Close()
	f.client.Timeout = 300 * time.Millisecond
	for i := range 4 {
		res := f.Send(context.Background(), "/v1/purge", fmt.Appendf(nil, `{"tags":["t%d"]}`, i))
		if !res["slow"].Queued || !res["back"].Queued {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	hung.Store(0)
	rc := &recorder{}
	startAt(t, addr, rc)
	f.retryDue(time.Now().Add(time.Hour))
	if n := hung.Load(); n != 1 {
		t.Errorf("slow peer got %d attempts in one pass, want 1", n)
	}
	if got := rc.got(); len(got) != 4 {
		t.Errorf("peer that came back got %d of 4", len(got))
	}
	if f.Pending() != 4 {
		t.Errorf("pending %d, want the slow peer's 4", f.Pending())
	}
}

// Which peer answers are worth retrying: a refusal of the request itself
// (400, 404, 409) is final and not queued; an auth mismatch (a token being
// rotated node by node), rate limiting, a timeout or a server error is
// retried until the peer takes it.
func TestFanoutRetriesTransientRefusals(t *testing.T) {
	for _, c := range []struct {
		status int
		queued bool
	}{
		{400, false}, {404, false}, {409, false},
		{401, true}, {403, true}, {408, true}, {429, true}, {500, true}, {503, true},
	} {
		var calls atomic.Int32
		p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(c.status)
		}))
		f := newTestFanout(t, "", Peer{"p", p.URL})
		res := f.Send(context.Background(), "/v1/purge", []byte(`{"all":true}`))["p"]
		if res.Error == "" || res.Queued != c.queued || (f.Pending() == 1) != c.queued {
			t.Errorf("%d: %+v, pending %d; want queued=%v", c.status, res, f.Pending(), c.queued)
		}
		f.retryDue(time.Now().Add(time.Hour))
		if want := map[bool]int32{false: 1, true: 2}[c.queued]; calls.Load() != want {
			t.Errorf("%d: %d calls, want %d", c.status, calls.Load(), want)
		}
		f.Close()
		p.Close()
	}
}

// The queue on disk is bounded per peer: once full, an operation for that
// peer is reported as not queued, with an error saying why, and counted.
func TestFanoutQueueBounded(t *testing.T) {
	f := newTestFanout(t, "", Peer{"b", "http://" + downAddr(t)})
	defer f.Close()
	f.maxPerPeer = 3
	for i := range 5 {
		res := f.Send(context.Background(), "/v1/purge", fmt.Appendf(nil, `{"tags":["t%d"]}`, i))["b"]
		if full := i >= 3; res.Queued == full || full != strings.Contains(res.Error, "retry queue for this peer is full") {
			t.Errorf("send %d: %+v", i, res)
		}
	}
	if f.Pending() != 3 || f.Dropped() != 2 {
		t.Errorf("pending %d, dropped %d; want 3 and 2", f.Pending(), f.Dropped())
	}
	reg := prometheus.NewRegistry()
	if err := f.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP outpost_fanout_queue_full_total Admin operations not queued for a peer because its retry queue was full.
# TYPE outpost_fanout_queue_full_total counter
outpost_fanout_queue_full_total 2
# HELP outpost_fanout_queue_pending Admin operations (purges, key records) queued for peers that have not taken them yet.
# TYPE outpost_fanout_queue_pending gauge
outpost_fanout_queue_pending 3
`)); err != nil {
		t.Error(err)
	}
}

// The queue survives a restart: operations queued for a peer that was down
// reach it from the next process, once, in order, and the bound still
// counts what was queued before the restart.
func TestFanoutQueueSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	addr := downAddr(t)
	f := newTestFanout(t, path, Peer{"b", "http://" + addr})
	for i := range 3 {
		f.Send(context.Background(), "/v1/purge", fmt.Appendf(nil, `{"tags":["t%d"]}`, i))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = newTestFanout(t, path, Peer{"b", "http://" + addr})
	defer f.Close()
	f.maxPerPeer = 3
	if res := f.Send(context.Background(), "/v1/purge", []byte(`{"all":true}`))["b"]; res.Queued {
		t.Errorf("queued beyond the bound after a restart: %+v", res)
	}
	rc := &recorder{}
	startAt(t, addr, rc)
	f.retryDue(time.Now().Add(time.Hour))
	f.retryDue(time.Now().Add(2 * time.Hour))
	if got := strings.Join(rc.got(), " "); got != `{"tags":["t0"]} {"tags":["t1"]} {"tags":["t2"]}` {
		t.Errorf("delivered %s", got)
	}
	if f.Pending() != 0 {
		t.Errorf("pending %d", f.Pending())
	}
}

// A peer's admin URL that redirects is not followed: Go's client would
// resend the bearer token to whatever port of the host the redirect names
// and turn the POST into a GET, and a page answering that GET with 200
// would count as the peer having taken the purge. The redirect is
// reported, and the operation queued for when nodes[].admin is fixed.
func TestFanoutDoesNotFollowRedirects(t *testing.T) {
	var leaked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		io.WriteString(w, "<html>login</html>")
	}))
	defer elsewhere.Close()
	peer := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/login", http.StatusFound))
	defer peer.Close()
	f := newTestFanout(t, "", Peer{"p", peer.URL})
	defer f.Close()
	res := f.Send(context.Background(), "/v1/purge", []byte(`{"all":true}`))["p"]
	if !strings.Contains(res.Error, "302") || !res.Queued || f.Pending() != 1 {
		t.Errorf("%+v, pending %d; want the 302 reported and the purge queued", res, f.Pending())
	}
	f.retryDue(time.Now().Add(time.Hour))
	if f.Pending() != 1 {
		t.Errorf("pending %d after a retry that was redirected again", f.Pending())
	}
	if leaked.Load() != 0 {
		t.Errorf("the token reached the redirect's target %d times", leaked.Load())
	}
}

// A peer that takes a new operation is back: its backlog is retried on
// the next pass, not when its backoff (up to minutes) runs out.
func TestFanoutBackPeerCatchesUpAtOnce(t *testing.T) {
	addr := downAddr(t)
	f := newTestFanout(t, "", Peer{"b", "http://" + addr})
	defer f.Close()
	now := time.Now()
	f.Send(context.Background(), "/v1/purge", []byte(`{"tags":["old"]}`))
	for i := range 5 { // backoff grows to 32s
		f.retryDue(now.Add(time.Duration(i+2) * time.Minute))
	}
	rc := &recorder{}
	startAt(t, addr, rc)
	if res := f.Send(context.Background(), "/v1/purge", []byte(`{"tags":["new"]}`))["b"]; res.Error != "" {
		t.Fatal(res.Error)
	}
	f.retryDue(now.Add(6 * time.Minute))
	if got := strings.Join(rc.got(), " "); got != `{"tags":["new"]} {"tags":["old"]}` {
		t.Errorf("peer got %s; want the backlog right after the new purge", got)
	}
}

// The bound is on bytes too: a purge body may be 1 MiB, and 10,000 of
// them would be 10 GiB of queue.
func TestFanoutQueueBoundedInBytes(t *testing.T) {
	f := newTestFanout(t, "", Peer{"b", "http://" + downAddr(t)})
	defer f.Close()
	f.maxBytesPerPeer = 3100
	body := fmt.Appendf(nil, `{"tags":[%q]}`, strings.Repeat("x", 990))
	for i := range 4 {
		res := f.Send(context.Background(), "/v1/purge", body)["b"]
		if full := i == 3; res.Queued == full {
			t.Errorf("send %d (%d bytes each): %+v", i, len(body), res)
		}
	}
	// Delivering makes room again.
	rc := &recorder{}
	startAt(t, strings.TrimPrefix(f.peers[0].Admin, "http://"), rc)
	f.retryDue(time.Now().Add(time.Hour))
	if res := f.Send(context.Background(), "/v1/purge", body)["b"]; res.Error != "" || len(rc.got()) != 4 {
		t.Errorf("after the backlog was delivered: %+v, peer got %d", res, len(rc.got()))
	}
	if f.queued["b"] != (backlog{}) {
		t.Errorf("backlog after delivery: %+v", f.queued["b"])
	}
}

// A retry pass reads what it needs: for a peer whose oldest operation is
// still backing off, that one record, not the peer's whole backlog (up to
// 64 MiB, every second, while the peer is down).
func TestFanoutRetryPassReadsOnlyTheHeads(t *testing.T) {
	f := newTestFanout(t, "", Peer{"b", "http://" + downAddr(t)})
	defer f.Close()
	f.db.NoSync = true
	for range 2000 {
		if err := f.enqueue(queued{Peer: "b", Path: "/v1/purge", Body: []byte(`{"all":true}`), NextAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(3, func() { f.retryDue(time.Now()) })
	if allocs > 200 {
		t.Errorf("a pass over a backlog that is not due made %.0f allocations", allocs)
	}
	if f.Pending() != 2000 {
		t.Errorf("pending %d", f.Pending())
	}
}

// A queue written by an earlier version (keys were bare sequence numbers)
// is taken over at start, in order, and new operations queue behind it.
func TestFanoutQueueFromEarlierVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := downAddr(t)
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(queueBucket)
		if err != nil {
			return err
		}
		for i, peer := range []string{"b", "gone", "b"} {
			id, _ := b.NextSequence()
			v := fmt.Appendf(nil, `{"peer":%q,"path":"/v1/purge","body":{"tags":["old%d"]},"attempts":3,"next_at":"2026-01-01T00:00:00Z"}`, peer, i)
			if err := b.Put(binary.BigEndian.AppendUint64(nil, id), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f := newTestFanout(t, path, Peer{"b", "http://" + addr})
	defer f.Close()
	if f.Pending() != 3 {
		t.Fatalf("pending %d, want the 3 old operations", f.Pending())
	}
	f.Send(context.Background(), "/v1/purge", []byte(`{"tags":["new"]}`))
	rc := &recorder{}
	startAt(t, addr, rc)
	f.retryDue(time.Now().Add(time.Hour))
	if got := strings.Join(rc.got(), " "); got != `{"tags":["old0"]} {"tags":["old2"]} {"tags":["new"]}` {
		t.Errorf("delivered %s", got)
	}
	if f.Pending() != 0 {
		t.Errorf("pending %d (the operation for a peer no longer configured is dropped)", f.Pending())
	}
}

// The token travels to peers and nowhere else: not into the log, whatever
// happens to the operation (refused, queued, full, delivered, dropped),
// and not into the results the admin API shows.
func TestFanoutNeverShowsToken(t *testing.T) {
	const token = "s3cret-fanout-token-0123456789"
	var log strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
	status := atomic.Int32{}
	status.Store(401)
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, `{}`)
	}))
	defer peer.Close()
	f, err := NewFanout("self", []Peer{{"p", peer.URL}, {"down", "http://" + downAddr(t)}}, token,
		filepath.Join(t.TempDir(), "q.db"), slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.maxPerPeer = 1
	var shown strings.Builder
	for range 3 {
		for _, res := range f.Send(context.Background(), "/v1/purge", []byte(`{"all":true}`)) {
			fmt.Fprintf(&shown, "%+v %s\n", res, res.Result)
		}
	}
	status.Store(400)
	f.retryDue(time.Now().Add(time.Hour))
	status.Store(200)
	f.Send(context.Background(), "/v1/purge", []byte(`{"all":true}`))
	f.retryDue(time.Now().Add(2 * time.Hour))
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(log.String()+shown.String(), "s3cret") {
		t.Errorf("token shown:\nlog: %s\nresults: %s", log.String(), shown.String())
	}
	if !strings.Contains(log.String(), "retry queue is full") {
		t.Errorf("the log does not say the queue was full:\n%s", log.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
