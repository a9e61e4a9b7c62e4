package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

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

	stop chan struct{}
	done chan struct{}
}

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
		client: &http.Client{Timeout: 10 * time.Second}, stop: make(chan struct{}), done: make(chan struct{})}
	if queuePath != "" {
		db, err := bolt.Open(queuePath, 0o600, &bolt.Options{Timeout: 2 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("fanout queue %s: %w", queuePath, err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(queueBucket)
			return err
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
func (f *Fanout) Send(ctx context.Context, path string, body []byte) map[string]Result {
	out := make(map[string]Result, len(f.peers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range f.peers {
		wg.Add(1)
		go func(p Peer) {
			defer wg.Done()
			res := f.post(ctx, p, path, body)
			if res.Error != "" && f.db != nil {
				if err := f.enqueue(queued{Peer: p.Name, Path: path, Body: body, NextAt: time.Now().Add(time.Second)}); err == nil {
					res.Queued = true
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

func (f *Fanout) post(ctx context.Context, p Peer, path string, body []byte) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(p.Admin, "/")+path, bytes.NewReader(body))
	if err != nil {
		return Result{Error: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(FanoutHeader, f.self)
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return Result{Error: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := Result{Status: resp.StatusCode}
	if json.Valid(b) {
		r.Result = b
	}
	if resp.StatusCode/100 != 2 {
		r.Error = fmt.Sprintf("peer answered %d", resp.StatusCode)
		if resp.StatusCode/100 == 4 {
			// The peer understood and refused: retrying won't help.
			return Result{Status: r.Status, Result: r.Result, Error: r.Error + " (not retried)"}
		}
	}
	return r
}

func (f *Fanout) enqueue(q queued) error {
	return f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(queueBucket)
		id, _ := b.NextSequence()
		v, _ := json.Marshal(q)
		return b.Put(u64(id), v)
	})
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

func (f *Fanout) retryLoop() {
	defer close(f.done)
	if f.db == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.retryDue(time.Now())
		}
	}
}

func (f *Fanout) retryDue(now time.Time) {
	type item struct {
		key []byte
		q   queued
	}
	var due []item
	_ = f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(queueBucket).ForEach(func(k, v []byte) error {
			var q queued
			if json.Unmarshal(v, &q) == nil && !q.NextAt.After(now) {
				due = append(due, item{append([]byte(nil), k...), q})
			}
			return nil
		})
	})
	for _, it := range due {
		var peer *Peer
		for i := range f.peers {
			if f.peers[i].Name == it.q.Peer {
				peer = &f.peers[i]
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var res Result
		if peer != nil {
			res = f.post(ctx, *peer, it.q.Path, it.q.Body)
		}
		cancel()
		_ = f.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(queueBucket)
			if peer == nil || res.Error == "" || strings.HasSuffix(res.Error, "(not retried)") {
				if peer != nil && f.log != nil {
					f.log.Info("queued admin operation delivered", "peer", peer.Name, "path", it.q.Path, "attempts", it.q.Attempts+1)
				}
				return b.Delete(it.key)
			}
			it.q.Attempts++
			backoff := time.Second << min(it.q.Attempts, 9) // up to ~8.5 min
			it.q.NextAt = now.Add(backoff)
			v, _ := json.Marshal(it.q)
			return b.Put(it.key, v)
		})
	}
}

// Close stops retrying and closes the queue.
func (f *Fanout) Close() error {
	close(f.stop)
	<-f.done
	if f.db != nil {
		return f.db.Close()
	}
	return nil
}
