package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

// FanoutHeader marks an admin request forwarded by a peer: the receiver
// applies it locally and does not forward it again.
const FanoutHeader = "X-Outpost-Fanout-From"

// Peer is another node's admin API.
type Peer struct {
	Name  string
	Admin string // base URL, e.g. https://203.0.113.5:9443
}

// Fanout sends admin operations (purges) to every peer and keeps the ones
// that failed in a durable queue, retried with backoff until they land, so
// a node that was offline catches up when it returns.
type Fanout struct {
	self   string
	peers  []Peer
	token  string
	client *http.Client
	db     *bolt.DB // nil: no durability (tests, single process)
	log    *slog.Logger

	// maxPerPeer bounds each peer's queue on disk; queued counts it.
	maxPerPeer int
	qmu        sync.Mutex
	queued     map[string]int
	back       map[string]bool // peers that took a new operation while they had a backlog
	dropped    atomic.Int64

	ctx  context.Context // cancelled by Close: retries in flight stop
	stop context.CancelFunc
	done chan struct{}
}

// MaxQueuedPerPeer is how many operations wait for one peer at most; more
// are reported as not queued (and counted in Dropped).
const MaxQueuedPerPeer = 10000

var queueBucket = []byte("fanout-queue")

type queued struct {
	Peer     string          `json:"peer"`
	Path     string          `json:"path"`
	Body     json.RawMessage `json:"body"`
	Attempts int             `json:"attempts"`
	NextAt   time.Time       `json:"next_at"`
}

// NewFanout returns a fanout from self to peers, with its queue in the
// bbolt file at queuePath ("" for in-memory only: failures are reported,
// not retried).
func NewFanout(self string, peers []Peer, token, queuePath string, log *slog.Logger) (*Fanout, error) {
	f := &Fanout{self: self, peers: peers, token: token, log: log,
		client: &http.Client{Timeout: 10 * time.Second,
			// A redirect would carry the token to wherever on the host it
			// points and turn the POST into a GET; report it instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		maxPerPeer: MaxQueuedPerPeer, queued: map[string]int{}, back: map[string]bool{}, done: make(chan struct{})}
	f.ctx, f.stop = context.WithCancel(context.Background())
	if queuePath != "" {
		db, err := bolt.Open(queuePath, 0o600, &bolt.Options{Timeout: 2 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("fanout queue %s: %w", queuePath, err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(queueBucket)
			if err != nil {
				return err
			}
			return b.ForEach(func(_, v []byte) error {
				var q queued
				if json.Unmarshal(v, &q) == nil {
					f.queued[q.Peer]++
				}
				return nil
			})
		}); err != nil {
			db.Close()
			return nil, err
		}
		f.db = db
	}
	go f.retryLoop()
	return f, nil
}

// Result is one peer's outcome.
type Result struct {
	Status int             `json:"status,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Queued bool            `json:"queued,omitempty"` // will be retried
}

// Send posts body to path on every peer concurrently and reports per peer.
// An operation a peer could not take for now (unreachable, a server error,
// an auth mismatch, rate limiting) is queued for that peer; one the peer
// refused as such (another 4xx) is not.
func (f *Fanout) Send(ctx context.Context, path string, body []byte) map[string]Result {
	out := make(map[string]Result, len(f.peers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range f.peers {
		wg.Add(1)
		go func(p Peer) {
			defer wg.Done()
			res, retry := f.post(ctx, p, path, body)
			if res.Error == "" {
				// The peer is up: a backlog it has is due now.
				f.qmu.Lock()
				if f.queued[p.Name] > 0 {
					f.back[p.Name] = true
				}
				f.qmu.Unlock()
			}
			if res.Error != "" && retry && f.db != nil {
				err := f.enqueue(queued{Peer: p.Name, Path: path, Body: body, NextAt: time.Now().Add(time.Second)})
				switch {
				case err == nil:
					res.Queued = true
				case errors.Is(err, ErrQueueFull):
					f.dropped.Add(1)
					res.Error += fmt.Sprintf("; not queued: the retry queue for this peer is full (%d operations)", f.maxPerPeer)
					if f.log != nil {
						f.log.Error("admin operation not queued for a peer: its retry queue is full", "peer", p.Name, "path", path, "max", f.maxPerPeer)
					}
				default:
					res.Error += "; not queued: " + err.Error()
				}
			}
			mu.Lock()
			out[p.Name] = res
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	return out
}

// post sends one operation and reports whether a failure is worth retrying.
func (f *Fanout) post(ctx context.Context, p Peer, path string, body []byte) (Result, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(p.Admin, "/")+path, bytes.NewReader(body))
	if err != nil {
		return Result{Error: err.Error()}, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(FanoutHeader, f.self)
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return Result{Error: err.Error()}, true
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := Result{Status: resp.StatusCode}
	if json.Valid(b) {
		r.Result = b
	}
	if resp.StatusCode/100 == 2 {
		return r, false
	}
	r.Error = fmt.Sprintf("peer answered %d", resp.StatusCode)
	if resp.StatusCode/100 == 3 {
		r.Error += fmt.Sprintf(" (a redirect to %q, not followed: check its nodes[].admin URL)", resp.Header.Get("Location"))
	}
	if !retryable(resp.StatusCode) {
		// The peer understood and refused: retrying won't help.
		r.Error += " (not retried)"
		return r, false
	}
	return r, true
}

// retryable reports whether a peer's answer may turn into a success
// without the operation changing: server errors, and the 4xx answers that
// describe the moment rather than the request (a token not yet the same on
// every node, a timeout, rate limiting).
func retryable(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return status/100 != 4
}

// ErrQueueFull is returned by enqueue when a peer already has
// maxPerPeer operations waiting.
var ErrQueueFull = errors.New("fanout: retry queue full")

func (f *Fanout) enqueue(q queued) error {
	f.qmu.Lock()
	defer f.qmu.Unlock()
	if f.queued[q.Peer] >= f.maxPerPeer {
		return ErrQueueFull
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(queueBucket)
		id, _ := b.NextSequence()
		v, _ := json.Marshal(q)
		return b.Put(u64(id), v)
	})
	if err == nil {
		f.queued[q.Peer]++
	}
	return err
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// Pending reports how many operations wait in the retry queue.
func (f *Fanout) Pending() int {
	if f.db == nil {
		return 0
	}
	n := 0
	_ = f.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(queueBucket).Stats().KeyN
		return nil
	})
	return n
}

// Register exposes the queue to Prometheus: outpost_fanout_queue_pending
// (operations waiting for a peer) and outpost_fanout_queue_full_total
// (operations not queued because their peer's queue was full).
func (f *Fanout) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_fanout_queue_pending",
			Help: "Admin operations (purges, key records) queued for peers that have not taken them yet."},
			func() float64 { return float64(f.Pending()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "outpost_fanout_queue_full_total",
			Help: "Admin operations not queued for a peer because its retry queue was full."},
			func() float64 { return float64(f.Dropped()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Dropped counts the operations not queued because a peer's queue was full.
func (f *Fanout) Dropped() int64 { return f.dropped.Load() }

func (f *Fanout) retryLoop() {
	defer close(f.done)
	if f.db == nil {
		return
	}
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			f.retryDue(time.Now())
		}
	}
}

// retryEvery is how often the queue is scanned for due operations.
var retryEvery = time.Second

type queueItem struct {
	key []byte
	q   queued
}

// retryDue retries the queued operations that are due, each peer's in the
// order they were made and peers side by side: a peer's operations wait
// behind its oldest one, so nothing overtakes an operation still backing
// off, and a peer that fails costs one attempt per pass.
func (f *Fanout) retryDue(now time.Time) {
	byPeer := map[string][]queueItem{}
	_ = f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(queueBucket).ForEach(func(k, v []byte) error {
			var q queued
			if json.Unmarshal(v, &q) == nil {
				byPeer[q.Peer] = append(byPeer[q.Peer], queueItem{append([]byte(nil), k...), q})
			}
			return nil
		})
	})
	var wg sync.WaitGroup
	for name, items := range byPeer {
		var peer *Peer
		for i := range f.peers {
			if f.peers[i].Name == name {
				peer = &f.peers[i]
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.retryPeer(peer, items, now)
		}()
	}
	wg.Wait()
}

// retryPeer delivers one peer's due operations in order, stopping at the
// first that is not due or fails; all are due once the peer took a new
// operation from Send (it is back). A nil peer is no longer configured: its
// operations are dropped.
func (f *Fanout) retryPeer(peer *Peer, items []queueItem, now time.Time) {
	f.qmu.Lock()
	back := f.back[items[0].q.Peer]
	delete(f.back, items[0].q.Peer)
	f.qmu.Unlock()
	for _, it := range items {
		if peer != nil && it.q.NextAt.After(now) && !back {
			return
		}
		var res Result
		retry := false
		if peer != nil {
			ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
			res, retry = f.post(ctx, *peer, it.q.Path, it.q.Body)
			cancel()
			if f.ctx.Err() != nil {
				return // closing: the operation stays queued for the next start
			}
		}
		if res.Error != "" && retry {
			it.q.Attempts++
			backoff := time.Second << min(it.q.Attempts, 9) // up to ~8.5 min
			it.q.NextAt = now.Add(backoff)
			v, _ := json.Marshal(it.q)
			_ = f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(queueBucket).Put(it.key, v) })
			return
		}
		if f.log != nil && peer != nil {
			if res.Error == "" {
				f.log.Info("queued admin operation delivered", "peer", peer.Name, "path", it.q.Path, "attempts", it.q.Attempts+1)
			} else {
				f.log.Warn("queued admin operation refused by the peer; dropped", "peer", peer.Name, "path", it.q.Path, "error", res.Error)
			}
		}
		if f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(queueBucket).Delete(it.key) }) == nil {
			f.qmu.Lock()
			f.queued[it.q.Peer]--
			f.qmu.Unlock()
		}
	}
}

// Close stops retrying and closes the queue.
func (f *Fanout) Close() error {
	f.stop()
	<-f.done
	if f.db != nil {
		return f.db.Close()
	}
	return nil
}
