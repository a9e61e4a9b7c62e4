package cdn

import (
	"io"
	"maps"
	"net/http"
	"os"
	"sync"

	"github.com/outpost-edge/outpost/cdn/store"
)

// fillOutcome is what a coalesced fetch turned into, as seen by followers.
type fillOutcome int

const (
	outcomePending fillOutcome = iota
	outcomeStoring             // body streams into tempPath; header is the client header
	outcomePass                // not storable: each follower fetches for itself
	outcomeLookup              // answered from the store: look up again (or serve stale)
)

// fill is one in-flight origin fetch that concurrent requests for the same
// object share. The leader sets the outcome fields before closing ready;
// they are read-only afterwards.
type fill struct {
	ready chan struct{} // closed once the outcome is known
	done  chan struct{} // closed when the fetch has ended
	key   string        // the cache key (all variants), for matching purges

	outcome  fillOutcome
	status   int
	header   http.Header  // client-ready header (outcomeStoring)
	vary     []string     // Vary of the response being stored
	variant  string       // its variant key
	tempPath string       // body being written (outcomeStoring)
	tags     []string     // surrogate keys of the body being stored, or of stale
	stale    *store.Entry // entry to serve stale (outcomeLookup after an origin error)
	xcache   string       // what followers report (outcomeLookup)

	mu       sync.Mutex // guards the progress fields below
	written  int64
	complete bool
	failed   bool
	notify   chan struct{} // closed and replaced on progress
	readyOne sync.Once
}

func newFill(key string) *fill {
	return &fill{key: key, ready: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{})}
}

// setReady publishes the outcome (once).
func (f *fill) setReady(o fillOutcome) {
	f.readyOne.Do(func() {
		f.outcome = o
		close(f.ready)
	})
}

func (f *fill) progress(n int64, complete, failed bool) {
	f.mu.Lock()
	f.written = n
	f.complete = f.complete || complete
	f.failed = f.failed || failed
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

func (f *fill) snapshot() (n int64, complete, failed bool, ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written, f.complete, f.failed, f.notify
}

// join returns the fill fk (of cache key key) and whether the caller
// leads it.
func (c *Cache) join(fk, key string) (*fill, bool) {
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	if f := c.fills[fk]; f != nil {
		return f, false
	}
	f := newFill(key)
	c.fills[fk] = f
	return f, true
}

// detachFills forgets the in-flight fills a hard purge may cover, so a
// request arriving after it fetches anew instead of following a body the
// purge was meant to remove; detached fills finish for the clients already
// following them (release only deletes its own map entry). Fills the purge
// cannot cover stay joinable.
func (c *Cache) detachFills(sel *purgeSel) {
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	maps.DeleteFunc(c.fills, func(_ string, f *fill) bool { return f.mayMatch(sel) })
}

// mayMatch reports whether sel may cover f. A fill's tags are known once
// its outcome is; before that, a selection by tag may cover it.
func (f *fill) mayMatch(sel *purgeSel) bool {
	select {
	case <-f.ready:
		return sel.matches(f.key, f.tags)
	default:
		return len(sel.tags) > 0 || sel.matches(f.key, nil)
	}
}

// tryJoin starts a fill only if none is running.
func (c *Cache) tryJoin(fk, key string) (*fill, bool) {
	f, leader := c.join(fk, key)
	if !leader {
		return nil, false
	}
	return f, true
}

// release ends a fill; it is safe after a panic: followers still waiting
// for an outcome are told to fetch for themselves.
func (c *Cache) release(key string, f *fill) {
	c.fillMu.Lock()
	if c.fills[key] == f {
		delete(c.fills, key)
	}
	c.fillMu.Unlock()
	f.setReady(outcomePass)
	f.mu.Lock()
	if !f.complete {
		f.failed = true
	}
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	close(f.done)
}

// follow copies a body being written by a fill to w, waiting for more
// bytes as they arrive; what it copied is flushed before each wait, so a
// body the origin trickles reaches the client as it comes. It returns how
// many bytes it copied, and false when the fill failed before the body was
// complete (the caller must finish the body some other way or cut the
// connection).
func (f *fill) follow(w http.ResponseWriter, file *os.File, cancel <-chan struct{}, buf []byte) (int64, bool) {
	var off, flushed int64
	for {
		n, complete, failed, ch := f.snapshot()
		for off < n {
			want := min(int64(len(buf)), n-off)
			m, err := file.ReadAt(buf[:want], off)
			if m > 0 {
				if _, werr := w.Write(buf[:m]); werr != nil {
					return off, true // client gone; nothing more to do
				}
				off += int64(m)
			}
			if err != nil && err != io.EOF {
				return off, false
			}
			if m == 0 {
				break
			}
		}
		if off >= n && complete {
			return off, true
		}
		if failed {
			return off, false
		}
		if off > flushed {
			_ = http.NewResponseController(w).Flush()
			flushed = off
		}
		select {
		case <-ch:
		case <-cancel:
			return off, true
		}
	}
}
