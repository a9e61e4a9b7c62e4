package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// PurgeStream carries purges between the nodes through a Redis stream, the
// cluster model's shared engine (DESIGN §4). The node that takes a purge
// applies it to its own caches and appends it to the stream; every other
// node reads the stream, applies what it finds and answers on a list the
// publisher waits on. Unlike the admin API fan-out, a purge reaches a node
// that was offline when it comes back whether or not the node that took
// the purge is still up, and the nodes need not reach each other's admin
// APIs.
//
// Entries are numbered 1, 2, 3, … (their IDs are "n-0", from a counter
// beside the stream, not Redis's clock), so a gap is visible. Each node
// keeps the ID of the last entry it applied in a file and reads on from
// there after a restart. If entries it never read were trimmed from the
// stream (it was away for more than MaxLen purges), it cannot know what
// they purged and purges its caches whole: a stale object served for ever
// is what a purge exists to prevent.
type PurgeStream struct {
	rdb       redis.UniversalClient
	self      string
	peers     []string
	apply     StreamApply
	statePath string
	fallback  *Fanout
	log       *slog.Logger

	// Key names the stream; its counter is Key+":seq" and the answers to
	// entry id go to the list Key+":ack:"+id. The default's hash tag keeps
	// the stream and its counter in one Redis Cluster slot.
	Key string
	// MaxLen bounds the stream (approximately, as XADD MAXLEN ~ does).
	MaxLen int64
	// AckWait bounds how long Send waits for the peers' answers.
	AckWait time.Duration
	// Block is how long one read waits for new entries, and so how long
	// Run may take to return once its context ends (a blocked read is not
	// interrupted).
	Block time.Duration

	applied, gaps, readErrors atomic.Int64
}

// StreamApply applies a purge body read from the stream to this node's
// caches and returns what the admin API would answer for it.
type StreamApply func(ctx context.Context, body []byte) (json.RawMessage, error)

// Stream defaults.
const (
	DefaultStreamKey    = "outpost:{purge}"
	DefaultStreamMaxLen = 10000
	DefaultAckWait      = 5 * time.Second
	ackTTL              = 10 * time.Minute
)

// PurgePath is the admin API path of a purge, the only operation the
// stream carries.
const PurgePath = "/v1/purge"

// NewPurgeStream returns the stream of node self, expecting answers from
// peers (the other nodes' names), applying entries with apply and keeping
// its position in the file statePath. fallback, when not nil, carries
// purges when Redis cannot take them.
func NewPurgeStream(rdb redis.UniversalClient, self string, peers []string, statePath string, apply StreamApply, fallback *Fanout, log *slog.Logger) *PurgeStream {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PurgeStream{rdb: rdb, self: self, peers: peers, apply: apply, statePath: statePath, fallback: fallback, log: log,
		Key: DefaultStreamKey, MaxLen: DefaultStreamMaxLen, AckWait: DefaultAckWait, Block: time.Second}
}

// appendScript adds an entry numbered one past the counter, atomically.
var appendScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], n .. '-0', 'from', ARGV[2], 'body', ARGV[3])
`)

// ack is one node's answer to an entry.
type ack struct {
	Node   string          `json:"node"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Send appends a purge (path must be PurgePath) to the stream and waits up
// to AckWait for every peer's answer. A peer that has not answered by then
// is reported queued: it applies the purge when it reads the stream. When
// Redis cannot take the purge, it goes through the fallback fan-out, or is
// reported not delivered.
func (s *PurgeStream) Send(ctx context.Context, path string, body []byte) map[string]Result {
	if path != PurgePath {
		return s.fail(ctx, path, body, fmt.Errorf("the purge stream carries only %s, not %s", PurgePath, path))
	}
	id, err := appendScript.Run(ctx, s.rdb, []string{s.Key, s.Key + ":seq"}, s.MaxLen, s.self, body).Text()
	if err != nil {
		if s.fallback != nil {
			s.log.Warn("purge stream: Redis did not take the purge; sending it over the admin API", "error", err)
		} else {
			s.log.Error("purge stream: Redis did not take the purge, and no node has an admin URL to send it to: the other nodes do not get it", "error", err)
		}
		return s.fail(ctx, path, body, fmt.Errorf("redis: %w", err))
	}
	out := make(map[string]Result, len(s.peers))
	// Peers not reading the stream now are not waited for.
	waiting := len(s.peers)
	if alive, err := s.rdb.MGet(ctx, s.aliveKeys(s.peers)...).Result(); err == nil {
		for i, v := range alive {
			if v == nil {
				out[s.peers[i]] = Result{Error: "not reading the stream now: the node applies the purge when it is back", Queued: true}
				waiting--
			}
		}
	}
	wait, cancel := context.WithTimeout(ctx, s.AckWait)
	defer cancel()
	var waitErr error
	for got := 0; got < waiting; {
		dl, _ := wait.Deadline()
		left := time.Until(dl)
		if left < time.Millisecond {
			break
		}
		// BLPOP waits whole seconds (go-redis would log a shorter wait
		// and round it up anyway).
		left = max(left.Truncate(time.Second), time.Second)
		v, err := s.rdb.BLPop(wait, left, s.Key+":ack:"+id).Result()
		if err != nil {
			if !errors.Is(err, redis.Nil) && wait.Err() == nil {
				waitErr = err
			}
			break
		}
		var a ack
		if len(v) != 2 || json.Unmarshal([]byte(v[1]), &a) != nil || !s.isPeer(a.Node) {
			continue
		}
		prev, seen := out[a.Node]
		if seen && !prev.Queued {
			continue // answered twice
		}
		if !seen {
			got++
		}
		out[a.Node] = Result{Result: a.Result, Error: a.Error}
	}
	for _, p := range s.peers {
		if _, ok := out[p]; ok {
			continue
		}
		msg := "no answer yet: the node applies the purge when it reads the stream"
		if waitErr != nil {
			msg += " (waiting for answers: " + waitErr.Error() + ")"
		}
		out[p] = Result{Error: msg, Queued: true}
	}
	return out
}

// aliveKey is the key saying that node reads the stream now.
func (s *PurgeStream) aliveKey(node string) string { return s.Key + ":alive:" + node }

// aliveKeys are the aliveKeys of nodes.
func (s *PurgeStream) aliveKeys(nodes []string) []string {
	keys := make([]string, len(nodes))
	for i, n := range nodes {
		keys[i] = s.aliveKey(n)
	}
	return keys
}

func (s *PurgeStream) isPeer(name string) bool {
	for _, p := range s.peers {
		if p == name {
			return true
		}
	}
	return false
}

// fail sends through the fallback, or reports err for every peer.
func (s *PurgeStream) fail(ctx context.Context, path string, body []byte, err error) map[string]Result {
	if s.fallback != nil && path == PurgePath {
		return s.fallback.Send(ctx, path, body)
	}
	out := make(map[string]Result, len(s.peers))
	for _, p := range s.peers {
		out[p] = Result{Error: err.Error()}
	}
	return out
}

// Run reads the stream until ctx ends, applying other nodes' purges in
// order. Redis being down is waited out (with backoff); what was purged
// meanwhile is read when it returns.
func (s *PurgeStream) Run(ctx context.Context) {
	defer func() {
		// Stopped: publishers need not wait for this node's answers.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.rdb.Del(ctx, s.aliveKey(s.self))
	}()
	last, known := s.loadPosition()
	backoff := time.Duration(0)
	down := false
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		// Publishers wait for the answers of nodes that say they read.
		err := s.rdb.Set(ctx, s.aliveKey(s.self), "1", 2*s.Block+3*time.Second).Err()
		next := last
		if err == nil {
			next, err = s.position(ctx, last, known)
		}
		if err == nil {
			known = true
			if next != last {
				last = next
				s.savePosition(last)
			}
			last, err = s.read(ctx, last)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.readErrors.Add(1)
			if !down {
				s.log.Warn("purge stream: cannot read; retrying until Redis answers", "error", err)
				down = true
			}
			backoff = min(max(2*backoff, 500*time.Millisecond), 30*time.Second)
			continue
		}
		if down {
			s.log.Info("purge stream: reading again")
			down = false
		}
		backoff = 0
	}
}

// position checks last against the stream before a read: where a node
// with no saved position starts (the stream's end: nothing before it was
// meant for a cache it did not have), and a stream that is behind it
// (recreated, as by a Redis restart without persistence: read it from its
// start).
func (s *PurgeStream) position(ctx context.Context, last string, known bool) (string, error) {
	info, err := s.rdb.XInfoStream(ctx, s.Key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return "0-0", nil // no stream (yet, or any more): read it from its first entry
		}
		return last, err
	}
	if !known {
		return info.LastGeneratedID, nil
	}
	if idLess(info.LastGeneratedID, last) {
		s.log.Warn("purge stream: the stream is behind this node's position (recreated?); reading it from its start",
			"position", last, "stream_last", info.LastGeneratedID)
		return "0-0", nil
	}
	return last, nil
}

// gap handles entries between last and next that this node never read
// (trimmed from the stream): its caches are purged whole.
func (s *PurgeStream) gap(ctx context.Context, last, next string) error {
	s.gaps.Add(1)
	s.log.Warn("purge stream: purges this node never read were trimmed from the stream; purging its caches whole",
		"position", last, "next", next)
	if _, err := s.apply(ctx, []byte(`{"all":true}`)); err != nil {
		return fmt.Errorf("purging whole after a gap: %w", err)
	}
	return nil
}

// read waits for entries after last, applies them and answers each, and
// returns the new position.
func (s *PurgeStream) read(ctx context.Context, last string) (string, error) {
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s.Key, last}, Count: 100, Block: s.Block}).Result()
	if errors.Is(err, redis.Nil) {
		return last, nil // nothing new
	}
	if err != nil {
		return last, err
	}
	moved := false
	for _, st := range res {
		for _, m := range st.Messages {
			if !follows(last, m.ID) {
				if err := s.gap(ctx, last, m.ID); err != nil {
					if moved {
						s.savePosition(last)
					}
					return last, err
				}
			}
			from, _ := m.Values["from"].(string)
			body, _ := m.Values["body"].(string)
			if from != s.self && !s.answer(ctx, m.ID, body) && ctx.Err() != nil {
				// Stopping cut the purge short: read it again next time.
				if moved {
					s.savePosition(last)
				}
				return last, ctx.Err()
			}
			last, moved = m.ID, true
		}
	}
	if moved {
		s.savePosition(last)
	}
	return last, nil
}

// answer applies one entry and tells its publisher. It reports whether
// the purge was applied.
func (s *PurgeStream) answer(ctx context.Context, id, body string) bool {
	a := ack{Node: s.self}
	res, err := s.apply(ctx, []byte(body))
	if err != nil && ctx.Err() != nil {
		return false // not an answer: the node is stopping
	}
	if err != nil {
		a.Error = err.Error()
		s.log.Warn("purge stream: purge not applied", "id", id, "error", err)
	} else {
		a.Result = res
		s.applied.Add(1)
	}
	b, _ := json.Marshal(a)
	key := s.Key + ":ack:" + id
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, b)
		p.Expire(ctx, key, ackTTL)
		return nil
	})
	if err != nil {
		// The purge is applied; only its publisher's report misses it.
		s.log.Warn("purge stream: cannot answer", "id", id, "error", err)
	}
	return a.Error == ""
}

func (s *PurgeStream) loadPosition() (string, bool) {
	b, err := os.ReadFile(s.statePath)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("purge stream: cannot read the saved position; starting at the stream's end", "path", s.statePath, "error", err)
		}
		return "", false
	}
	id := strings.TrimSpace(string(b))
	if _, _, ok := parseID(id); !ok {
		s.log.Warn("purge stream: the saved position is not a stream ID; starting at the stream's end", "path", s.statePath)
		return "", false
	}
	return id, true
}

func (s *PurgeStream) savePosition(id string) {
	if err := atomicfile.Write(s.statePath, []byte(id+"\n"), 0o600); err != nil {
		// Read again after a restart; purging twice is harmless.
		s.log.Warn("purge stream: cannot save the position", "path", s.statePath, "error", err)
	}
}

// Register adds the stream's counters to reg.
func (s *PurgeStream) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "outpost_purge_stream_applied_total",
			Help: "Purges from other nodes applied from the Redis purge stream."},
			func() float64 { return float64(s.applied.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "outpost_purge_stream_gaps_total",
			Help: "Times purges this node never read were trimmed from the stream and its caches were purged whole."},
			func() float64 { return float64(s.gaps.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "outpost_purge_stream_read_errors_total",
			Help: "Failed reads of the Redis purge stream (each retried)."},
			func() float64 { return float64(s.readErrors.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// parseID splits a stream ID "ms-seq".
func parseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// follows reports whether entry next is the one numbered right after last.
func follows(last, next string) bool {
	l, _, lok := parseID(last)
	n, _, nok := parseID(next)
	return lok && nok && n == l+1
}

// idLess reports a < b for stream IDs; an unparsable ID is the smallest.
func idLess(a, b string) bool {
	am, as, aok := parseID(a)
	bm, bs, bok := parseID(b)
	switch {
	case !bok:
		return false
	case !aok:
		return true
	case am != bm:
		return am < bm
	}
	return as < bs
}
