package lb

import (
	"slices"
	"strconv"
)

// ring is a consistent-hash ring with virtual nodes, shared by ip_hash and
// consistent_hash. Points hash the backend id (not its index), so the ring
// is the same on every node and across reloads, and removing one of N
// backends moves only the keys that were on it (about 1/N).
type ring struct {
	points []ringPoint // sorted by hash
}

type ringPoint struct {
	hash uint64
	idx  int32 // index into Selection.Backends
}

// ringMaxPoints bounds the ring's memory (16 bytes a point).
const ringMaxPoints = 1 << 18

// ringPointsPerWeight is the number of virtual nodes per unit of weight
// when the pool is small enough (halved as often as ringMaxPoints needs);
// 128 keeps the spread within a few percent.
const ringPointsPerWeight = 128

func newRing(backends []*Backend) *ring {
	var sum int64
	for _, b := range backends {
		sum += b.weight.Load()
	}
	// Halve the points per unit of weight until the ring fits, rather than
	// scaling them to the exact total: a removal or weight change then
	// leaves the other backends' points alone unless the total crosses a
	// power of two (an exact scale moved 7-10% of keys between unchanged
	// backends on every such change).
	per := float64(ringPointsPerWeight)
	for sum > 0 && float64(sum)*per > ringMaxPoints {
		per /= 2
	}
	r := &ring{}
	var buf []byte
	for i, b := range backends {
		n := int(float64(b.weight.Load()) * per)
		if n < 1 {
			n = 1
		}
		for v := 0; v < n; v++ {
			buf = append(buf[:0], b.id...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(v), 10)
			r.points = append(r.points, ringPoint{hash: mix64(fnvBytes(fnvOffset, buf)), idx: int32(i)})
		}
	}
	slices.SortFunc(r.points, func(a, b ringPoint) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.idx - b.idx)
	})
	return r
}

// pick walks clockwise from key's position to the first usable backend.
// Unusable ones are passed over, so their keys spread over the others and
// come back when they recover.
func (r *ring) pick(s *Selection, key uint64) *Backend {
	n := len(r.points)
	if n == 0 {
		return nil
	}
	start, _ := slices.BinarySearchFunc(r.points, key, func(p ringPoint, k uint64) int {
		switch {
		case p.hash < k:
			return -1
		case p.hash > k:
			return 1
		}
		return 0
	})
	// Ramping backends may be skipped; remember the first usable one in case
	// every backend is ramping and all were skipped.
	fallback := -1
	last := int32(-1)
	// Once the walk has passed over as many unusable backends as there
	// are, check whether any is usable at all: with every backend down (or
	// tried) the walk would otherwise visit every point of the ring, up to
	// 2^18, per request.
	unusable := 0
	for j := 0; j < n; j++ {
		idx := r.points[(start+j)%n].idx
		if idx == last {
			continue
		}
		last = idx
		if !s.Usable(int(idx)) {
			unusable++
			if unusable == len(s.Backends) && fallback < 0 && !s.anyUsable() {
				return nil
			}
			continue
		}
		if s.skipRamping(int(idx)) {
			if fallback < 0 {
				fallback = int(idx)
			}
			continue
		}
		return s.Backends[idx]
	}
	if fallback >= 0 {
		return s.Backends[fallback]
	}
	return nil
}

// FNV-1a, 64 bit, written out so hashing a string does not allocate.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// mix64 is the splitmix64 finalizer: FNV's high bits are poorly mixed for
// short keys, and ring positions need the whole range.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
