package store

import (
	"hash/fnv"
	"sync"
)

// Policy decides which entry leaves the store next. Admit, Restore, Remove
// and Victim are called with the store's eviction mutex held; Hit is called
// on the hit path, concurrently, and must not take a store-wide lock.
type Policy interface {
	// Admit records a newly stored entry.
	Admit(e *Entry)
	// Restore records an entry loaded at startup; entries arrive oldest
	// access first.
	Restore(e *Entry)
	// Hit records an access.
	Hit(e *Entry)
	// Remove forgets an entry that left the store for another reason.
	Remove(e *Entry)
	// Victim removes and returns the next entry to evict, or nil.
	Victim() *Entry
}

// Policy names accepted by NewPolicy.
const (
	PolicyS3FIFO = "s3fifo"
	PolicyLRU    = "lru"
)

// NewPolicy returns the named policy sized for the given limits.
func NewPolicy(name string, maxBytes int64, maxObjects int) Policy {
	if name == PolicyLRU {
		return &lru{}
	}
	return newS3FIFO(maxBytes, maxObjects)
}

// node is the intrusive list state a policy keeps in each entry, so the
// policies allocate nothing per object.
type node struct {
	prev, next *Entry
	queue      uint8 // which list the entry is on (policy-specific)
}

// list is an intrusive doubly linked list of entries; head is the oldest.
type list struct {
	head, tail *Entry
	n          int
	bytes      int64
}

func (l *list) pushBack(e *Entry, q uint8) {
	e.pn.queue = q
	e.pn.prev, e.pn.next = l.tail, nil
	if l.tail != nil {
		l.tail.pn.next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
	l.bytes += e.TotalSize()
}

func (l *list) remove(e *Entry) {
	if e.pn.prev != nil {
		e.pn.prev.pn.next = e.pn.next
	} else {
		l.head = e.pn.next
	}
	if e.pn.next != nil {
		e.pn.next.pn.prev = e.pn.prev
	} else {
		l.tail = e.pn.prev
	}
	e.pn.prev, e.pn.next, e.pn.queue = nil, nil, 0
	l.n--
	l.bytes -= e.TotalSize()
}

func (l *list) popFront() *Entry {
	e := l.head
	if e != nil {
		l.remove(e)
	}
	return e
}

// lru is exact least-recently-used. Its Hit takes the policy mutex, which is
// why it is not the default: under many concurrent hits it serialises them.
type lru struct {
	mu sync.Mutex // guards l and every entry's pn while on it
	l  list
}

var _ Policy = (*lru)(nil)

const qLRU = 1

func (p *lru) Admit(e *Entry)   { p.mu.Lock(); p.l.pushBack(e, qLRU); p.mu.Unlock() }
func (p *lru) Restore(e *Entry) { p.Admit(e) }

func (p *lru) Hit(e *Entry) {
	p.mu.Lock()
	if e.pn.queue == qLRU {
		p.l.remove(e)
		p.l.pushBack(e, qLRU)
	}
	p.mu.Unlock()
}

func (p *lru) Remove(e *Entry) {
	p.mu.Lock()
	if e.pn.queue == qLRU {
		p.l.remove(e)
	}
	p.mu.Unlock()
}

func (p *lru) Victim() *Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.l.popFront()
}

// s3fifo is S3-FIFO (Yang et al., SOSP 2023): a small probationary FIFO
// (10% of capacity) that filters one-hit wonders, a main FIFO with
// reinsertion for objects seen again, and a ghost FIFO of recently evicted
// keys that sends a returning key straight to main. A hit only increments an
// atomic counter, so the hit path takes no lock at all.
type s3fifo struct {
	small, main list
	smallBytes  int64 // target byte size of small
	smallObjs   int   // target object count of small

	ghost     map[uint64]struct{}
	ghostRing []uint64
	ghostPos  int
}

var _ Policy = (*s3fifo)(nil)

const (
	qSmall  = 1
	qMain   = 2
	maxFreq = 3
)

func newS3FIFO(maxBytes int64, maxObjects int) *s3fifo {
	ghostN := maxObjects
	if ghostN > 1<<20 {
		ghostN = 1 << 20
	}
	if ghostN < 16 {
		ghostN = 16
	}
	so := maxObjects / 10
	if so < 1 {
		so = 1
	}
	return &s3fifo{
		smallBytes: maxBytes / 10,
		smallObjs:  so,
		ghost:      make(map[uint64]struct{}, ghostN),
		ghostRing:  make([]uint64, 0, ghostN),
	}
}

func ghostHash(e *Entry) uint64 {
	h := fnv.New64a()
	h.Write([]byte(e.id))
	return h.Sum64()
}

func (p *s3fifo) Admit(e *Entry) {
	e.freq.Store(0)
	g := ghostHash(e)
	if _, ok := p.ghost[g]; ok {
		delete(p.ghost, g)
		p.main.pushBack(e, qMain)
		return
	}
	p.small.pushBack(e, qSmall)
}

func (p *s3fifo) Restore(e *Entry) { p.main.pushBack(e, qMain) }

func (p *s3fifo) Hit(e *Entry) {
	if f := e.freq.Load(); f < maxFreq {
		e.freq.CompareAndSwap(f, f+1)
	}
}

func (p *s3fifo) Remove(e *Entry) {
	switch e.pn.queue {
	case qSmall:
		p.small.remove(e)
	case qMain:
		p.main.remove(e)
	}
}

func (p *s3fifo) addGhost(e *Entry) {
	g := ghostHash(e)
	if len(p.ghostRing) < cap(p.ghostRing) {
		p.ghostRing = append(p.ghostRing, g)
	} else {
		delete(p.ghost, p.ghostRing[p.ghostPos])
		p.ghostRing[p.ghostPos] = g
		p.ghostPos = (p.ghostPos + 1) % len(p.ghostRing)
	}
	p.ghost[g] = struct{}{}
}

func (p *s3fifo) Victim() *Entry {
	for p.small.n+p.main.n > 0 {
		if p.main.n == 0 || p.small.bytes > p.smallBytes || p.small.n > p.smallObjs {
			e := p.small.popFront()
			if e.freq.Load() > 0 {
				e.freq.Store(0)
				p.main.pushBack(e, qMain)
				continue
			}
			p.addGhost(e)
			return e
		}
		e := p.main.popFront()
		if f := e.freq.Load(); f > 0 {
			e.freq.Store(f - 1)
			p.main.pushBack(e, qMain)
			continue
		}
		return e
	}
	return nil
}
