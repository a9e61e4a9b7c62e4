package store

import (
	"os"
	"path/filepath"
)

// The memory tier keeps small bodies in RAM on top of their files, so a hot
// hit makes no system call. A body is loaded on its first hit; when the
// budget is full, a CLOCK sweep over the loaded entries frees those not
// served from memory since the previous sweep, so the tier follows the
// working set instead of keeping whatever came first. Hits only set an
// atomic flag; memMu is taken when a body is loaded.

// MemBytes returns the bytes of bodies held in memory.
func (s *Store) MemBytes() int64 { return s.memUsed.Load() }

// Body returns the named rendition's body ("" for identity) from memory,
// loading it from its file when it is small and the budget allows (after a
// sweep); nil means "read the file".
func (s *Store) Body(e *Entry, enc string) []byte {
	idx, path, size := 0, e.path, e.Size
	if enc != "" {
		idx = -1
		for i, r := range e.Encodings {
			if r.Name == enc {
				idx, path, size = i+1, filepath.Join(s.objDir, r.File), r.Size
			}
		}
	}
	if idx < 0 || idx >= len(e.mem) || size > s.opts.MemObjectMax || size > s.opts.MemBudget {
		return nil
	}
	if p := e.mem[idx].Load(); p != nil {
		if !e.memRef.Load() {
			e.memRef.Store(true)
		}
		return *p
	}
	if e.dead.Load() || !s.reserve(size) {
		return nil
	}
	var b []byte
	var err error
	if bodyOK(path, size) { // never through a symlink
		b, err = os.ReadFile(path)
	}
	if err != nil || int64(len(b)) != size {
		s.memUsed.Add(-size)
		return nil
	}
	if !e.mem[idx].CompareAndSwap(nil, &b) {
		s.memUsed.Add(-size)
		if p := e.mem[idx].Load(); p != nil {
			return *p
		}
		return b
	}
	e.memBytes.Add(size)
	if e.dead.Load() {
		// Removed while loading: give the budget back (once, via Swap).
		s.memUsed.Add(-e.memBytes.Swap(0))
		e.mem[idx].Store(nil)
		return b
	}
	s.memMu.Lock()
	if !e.inRing {
		e.inRing = true
		s.memRing = append(s.memRing, e)
	}
	s.memMu.Unlock()
	return b
}

// reserve charges size to the budget, sweeping cold bodies out if needed.
func (s *Store) reserve(size int64) bool {
	s.memMu.Lock()
	defer s.memMu.Unlock()
	for steps := 2 * len(s.memRing); s.memUsed.Load()+size > s.opts.MemBudget && len(s.memRing) > 0 && steps > 0; steps-- {
		if s.memHand >= len(s.memRing) {
			s.memHand = 0
		}
		x := s.memRing[s.memHand]
		switch {
		case x.dead.Load() || x.memBytes.Load() == 0:
			s.dropFromRing()
		case x.memRef.Load():
			x.memRef.Store(false)
			s.memHand++
		default:
			for i := range x.mem {
				x.mem[i].Store(nil)
			}
			s.memUsed.Add(-x.memBytes.Swap(0))
			s.dropFromRing()
		}
	}
	if s.memUsed.Load()+size > s.opts.MemBudget {
		return false
	}
	s.memUsed.Add(size)
	return true
}

// dropFromRing removes the entry under the hand (order does not matter to
// CLOCK, so the last one takes its place). memMu is held.
func (s *Store) dropFromRing() {
	last := len(s.memRing) - 1
	s.memRing[s.memHand].inRing = false
	s.memRing[s.memHand] = s.memRing[last]
	s.memRing[last] = nil
	s.memRing = s.memRing[:last]
}
