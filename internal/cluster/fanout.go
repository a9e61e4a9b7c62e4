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
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/outpost-edge/outpost/internal/boltfile"
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

	// maxPerPeer and maxBytesPerPeer bound each peer's queue on disk;
	// queued counts it.
	maxPerPeer      int
	maxBytesPerPeer int
	qmu             sync.Mutex
	queued          map[string]backlog
	back            map[string]bool // peers that took a new operation while they had a backlog
	dropped         atomic.Int64

	ctx  context.Context // cancelled by Close: retries in flight stop
	stop context.CancelFunc
	done chan struct{}
}

// backlog is what waits for one peer.
type backlog struct {
	n     int
	bytes int
}

// MaxQueuedBytesPerPeer bounds the bodies waiting for one peer (a purge
// body may be up to 1 MiB).
const MaxQueuedBytesPerPeer = 64 << 20

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
		client: &http.Client{Timeout: 10 * time.Second, Transport: peerTransport(),
			// A redirect would carry the token to wherever on the host it
			// points and turn the POST into a GET; report it instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		maxPerPeer: MaxQueuedPerPeer, maxBytesPerPeer: MaxQueuedBytesPerPeer, queued: map[string]backlog{}, back: map[string]bool{}, done: make(chan struct{})}
	f.ctx, f.stop = context.WithCancel(context.Background())
	if queuePath != "" {
		db, err := boltfile.Open(queuePath, 2*time.Second)
		if err != nil {
			return nil, queueError(queuePath, err)
		}
		if err := boltfile.Update(db, queuePath, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(queueBucket)
			if err != nil {
				return err
			}
			// Queues written before keys were grouped by peer had the
			// bare sequence number as the key: move them, in order.
			type move struct{ k, v []byte }
			var old []move
			err = b.ForEach(func(k, v []byte) error {
				var q queued
				if json.Unmarshal(v, &q) == nil {
					f.queued[q.Peer] = f.queued[q.Peer].add(len(q.Body))
					if len(k) == 8 {
						old = append(old, move{append([]byte(nil), k...), append([]byte(nil), v...)})
					}
				}
				return nil
			})
			for _, m := range old {
				var q queued
				_ = json.Unmarshal(m.v, &q)
				if err == nil {
					err = b.Put(queueKey(q.Peer, binary.BigEndian.Uint64(m.k)), m.v)
				}
				if err == nil {
					err = b.Delete(m.k)
				}
			}
			return err
		}); err != nil {
			db.Close()
			return nil, queueError(queuePath, err)
		}
		f.db = db
	}
	go f.retryLoop()
	return f, nil
}

// peerDialTimeout bounds connecting to a peer. A peer whose address drops
// packets (firewalled, a dead VPS) would otherwise hold the purge, and the
// operator's `outpost purge`, for the whole request timeout before it is
// queued; a reachable peer connects in one round trip, and this still
// covers a lost SYN (retransmitted after 1 s).
const peerDialTimeout = 3 * time.Second

// peerTransport is http.DefaultTransport's setup (environment proxy
// included) with the connect and TLS handshake bounded for admin calls to
// peers.
func peerTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: peerDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	return t
}

// queueError explains a queue file that cannot be opened. The queue holds
// purges peers have not applied yet, so it is not emptied behind the
// operator's back.
func queueError(path string, err error) error {
	if errors.Is(err, boltfile.ErrLocked) {
		return fmt.Errorf("fanout queue: %w", err)
	}
	return fmt.Errorf("fanout queue %s cannot be read: %w; move it aside to start with an empty queue "+
		"(purges still queued for peers are lost: repeat recent purges)", path, err)
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
				if f.queued[p.Name].n > 0 {
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
					res.Error += fmt.Sprintf("; not queued: the retry queue for this peer is full (%d operations or %d KiB at most)", f.maxPerPeer, f.maxBytesPerPeer>>10)
					if f.log != nil {
						f.log.Error("admin operation not queued for a peer: its retry queue is full", "peer", p.Name, "path", path, "max", f.maxPerPeer, "max_bytes", f.maxBytesPerPeer)
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
// maxPerPeer operations or maxBytesPerPeer bytes waiting.
var ErrQueueFull = errors.New("fanout: retry queue full")

func (f *Fanout) enqueue(q queued) error {
	f.qmu.Lock()
	defer f.qmu.Unlock()
	if b := f.queued[q.Peer]; b.n >= f.maxPerPeer || b.bytes+len(q.Body) > f.maxBytesPerPeer {
		return ErrQueueFull
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(queueBucket)
		id, _ := b.NextSequence()
		v, _ := json.Marshal(q)
		return b.Put(queueKey(q.Peer, id), v)
	})
	if err == nil {
		f.queued[q.Peer] = f.queued[q.Peer].add(len(q.Body))
	}
	return err
}

// add counts one more operation of size bytes; remove one fewer.
func (b backlog) add(size int) backlog    { return backlog{b.n + 1, b.bytes + size} }
func (b backlog) remove(size int) backlog { return backlog{b.n - 1, b.bytes - size} }

// queueKey is the key of a peer's operation number seq: each peer's
// operations are together, oldest first, after peerPrefix(peer).
func queueKey(peer string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(peerPrefix(peer), seq)
}

func peerPrefix(peer string) []byte {
	k := make([]byte, 0, 2+len(peer)+8)
	k = binary.BigEndian.AppendUint16(k, uint16(len(peer)))
	return append(k, peer...)
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

// retryDue retries the queued operations that are due, each peer's in the
// order they were made and peers side by side: a peer's operations wait
// behind its oldest one, so nothing overtakes an operation still backing
// off, and a peer that fails costs one attempt per pass.
func (f *Fanout) retryDue(now time.Time) {
	f.qmu.Lock()
	var names []string
	for name, b := range f.queued {
		if b.n > 0 {
			names = append(names, name)
		}
	}
	f.qmu.Unlock()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.retryPeer(name, now)
		}()
	}
	wg.Wait()
}

// head reads the oldest operation queued for peer name; key is nil when
// there is none, q is zero when its record does not decode.
func (f *Fanout) head(name string) (key []byte, q queued, ok bool) {
	prefix := peerPrefix(name)
	_ = f.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(queueBucket).Cursor().Seek(prefix)
		if k != nil && bytes.HasPrefix(k, prefix) {
			key = append([]byte(nil), k...)
			ok = json.Unmarshal(v, &q) == nil
		}
		return nil
	})
	return key, q, ok
}

// retryPeer delivers peer name's due operations in order, stopping at the
// first that is not due or fails; all are due once the peer took a new
// operation from Send (it is back). The operations of a peer no longer
// configured are dropped.
func (f *Fanout) retryPeer(name string, now time.Time) {
	var peer *Peer
	for i := range f.peers {
		if f.peers[i].Name == name {
			peer = &f.peers[i]
		}
	}
	f.qmu.Lock()
	back := f.back[name]
	delete(f.back, name)
	f.qmu.Unlock()
	for {
		key, q, ok := f.head(name)
		if key == nil {
			return
		}
		if !ok { // unreadable: it would block the rest for good
			if f.log != nil {
				f.log.Error("queued admin operation unreadable (damaged queue record): dropped; repeat recent purges on the peer",
					"peer", name, "file", f.db.Path())
			}
			_ = f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(queueBucket).Delete(key) })
			continue
		}
		if peer != nil && q.NextAt.After(now) && !back {
			return
		}
		var res Result
		retry := false
		if peer != nil {
			ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
			res, retry = f.post(ctx, *peer, q.Path, q.Body)
			cancel()
			if f.ctx.Err() != nil {
				return // closing: the operation stays queued for the next start
			}
		}
		if res.Error != "" && retry {
			q.Attempts++
			backoff := time.Second << min(q.Attempts, 9) // up to ~8.5 min
			q.NextAt = now.Add(backoff)
			v, _ := json.Marshal(q)
			_ = f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(queueBucket).Put(key, v) })
			return
		}
		if f.log != nil {
			switch {
			case peer == nil:
				f.log.Warn("queued admin operation dropped: the peer is no longer in the config", "peer", name, "path", q.Path)
			case res.Error == "":
				f.log.Info("queued admin operation delivered", "peer", name, "path", q.Path, "attempts", q.Attempts+1)
			default:
				f.log.Warn("queued admin operation refused by the peer; dropped", "peer", name, "path", q.Path, "error", res.Error)
			}
		}
		if err := f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(queueBucket).Delete(key) }); err != nil {
			return
		}
		f.qmu.Lock()
		f.queued[name] = f.queued[name].remove(len(q.Body))
		f.qmu.Unlock()
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
