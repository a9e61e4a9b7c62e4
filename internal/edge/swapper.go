package edge

import (
	"net/http"
	"sync/atomic"
)

// Swapper is an http.Handler whose target can be replaced atomically. A
// request runs entirely on the handler it loaded, so a reload lets
// in-flight requests finish on the old config.
type Swapper struct {
	h atomic.Pointer[http.Handler]
}

// NewSwapper returns a Swapper serving h.
func NewSwapper(h http.Handler) *Swapper {
	s := &Swapper{}
	s.Store(h)
	return s
}

// Store swaps in h.
func (s *Swapper) Store(h http.Handler) { s.h.Store(&h) }

// ServeHTTP implements http.Handler.
func (s *Swapper) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }
