package store

import (
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Meta is what the index keeps about one stored response variant. It is
// immutable once published in an Entry; updates copy it (Clone).
type Meta struct {
	Key     string   `json:"k"`            // primary cache key (scheme, host, path, query)
	Variant string   `json:"v"`            // normalised values of the Vary headers ("" without Vary)
	Vary    []string `json:"vy,omitempty"` // canonical header names from the response's Vary

	Status int         `json:"s"`
	Header http.Header `json:"h"` // stored response header fields (end-to-end only)

	RequestTime  time.Time     `json:"rq"`            // when the origin request was sent
	ResponseTime time.Time     `json:"rs"`            // when its response arrived
	InitialAge   time.Duration `json:"ia"`            // corrected_initial_age (RFC 9111 §4.2.3)
	Lifetime     time.Duration `json:"lt"`            // freshness lifetime after TTL rules
	SWR          time.Duration `json:"swr,omitempty"` // stale-while-revalidate window
	SIE          time.Duration `json:"sie,omitempty"` // stale-if-error window
	// MustRevalidate forbids serving stale (must-revalidate,
	// proxy-revalidate), grace and stale-if-error included.
	MustRevalidate bool `json:"mr,omitempty"`
	// SharedMaxAge (s-maxage present) forbids stale serving a client asks
	// for with max-stale, and grace; explicit stale-while-revalidate/-if-error
	// still apply.
	SharedMaxAge bool `json:"sm,omitempty"`
	// NoCache means stored but revalidated before every use.
	NoCache bool `json:"nc,omitempty"`
	// Immutable (RFC 8246): while fresh, a client's reload (request
	// no-cache or max-age) does not make the cache revalidate.
	Immutable bool `json:"im,omitempty"`
	// Compressible: the edge may compress this body (type, size, no
	// Content-Encoding, no no-transform).
	Compressible bool `json:"cz,omitempty"`
	// Invalidated marks a soft purge: treat as stale, serve while revalidating.
	Invalidated bool `json:"inv,omitempty"`

	Tags      []string   `json:"t,omitempty"` // surrogate keys / cache tags
	Size      int64      `json:"z"`           // identity body size
	File      string     `json:"f"`           // body file, relative to the objects directory
	Encodings []Encoding `json:"e,omitempty"` // compressed renditions of the identity body
}

// Encoding is one compressed rendition of an entry's body.
type Encoding struct {
	Name string `json:"n"` // gzip, br, zstd
	File string `json:"f"`
	Size int64  `json:"z"`
}

// Clone returns a deep copy, safe to modify.
func (m *Meta) Clone() Meta {
	c := *m
	c.Vary = slices.Clone(m.Vary)
	c.Header = CloneHeader(m.Header)
	c.Tags = slices.Clone(m.Tags)
	c.Encodings = slices.Clone(m.Encodings)
	return c
}

// CloneHeader deep-copies h with every value slice clipped, so a handler
// that appends to a shared slice can never write into the stored one.
func CloneHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		out[k] = slices.Clip(slices.Clone(v))
	}
	return out
}

// Entry is a published, immutable stored response. Readers hold it without
// locks; the mutable bookkeeping is atomic or guarded by the policy.
type Entry struct {
	Meta
	id   string // Key + "\x00" + Variant: the index key
	path string // absolute body path
	dir  string // the objects directory

	accessed atomic.Int64 // unix nanos of the last hit, flushed in batches
	dirty    atomic.Bool  // accessed changed since the last flush
	freq     atomic.Int32 // s3fifo access counter

	// mem holds small bodies in memory so a hot hit makes no system call:
	// index 0 is the identity body, i+1 is Encodings[i].
	mem      [4]atomic.Pointer[[]byte]
	memBytes atomic.Int64 // bytes charged to Store.memUsed
	dead     atomic.Bool  // left the store; its memory must not be charged
	memRef   atomic.Bool  // served from memory since the last CLOCK sweep
	inRing   bool         // on Store.memRing; guarded by Store.memMu

	pn      node // policy list state, guarded by the policy
	removed bool // guarded by Store.evictMu
}

// Path returns the file holding the identity body.
func (e *Entry) Path() string { return e.path }

// EncodingPath returns the file holding the named rendition, or "".
func (e *Entry) EncodingPath(name string) string {
	if enc, ok := e.Encoding(name); ok {
		return filepath.Join(e.dir, enc.File)
	}
	return ""
}

// Accessed returns the last access time.
func (e *Entry) Accessed() time.Time { return time.Unix(0, e.accessed.Load()) }

// TotalSize counts the identity body and every encoding.
func (e *Entry) TotalSize() int64 {
	n := e.Size
	for _, enc := range e.Encodings {
		n += enc.Size
	}
	return n
}

// Encoding returns the named rendition.
func (e *Entry) Encoding(name string) (Encoding, bool) {
	for _, enc := range e.Encodings {
		if enc.Name == name {
			return enc, true
		}
	}
	return Encoding{}, false
}

func entryID(key, variant string) string { return key + "\x00" + variant }

// VariantKey returns the request values of the Vary header names,
// normalised only where the field's definition says two forms mean the same
// (RFC 9111 §4.1): the content-negotiation fields (Accept, Accept-Encoding,
// Accept-Language, Accept-Charset) are case-insensitive lists whose order
// does not matter, so their members are trimmed, lower-cased and sorted and
// "gzip, br" and "BR,gzip" select one variant. Any other field is compared
// as sent (its lines joined, each trimmed): a Cookie or token that differs
// only in case selects a different variant.
func VariantKey(vary []string, h http.Header) string {
	if len(vary) == 0 {
		return ""
	}
	var b strings.Builder
	for i, name := range vary {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(name)
		b.WriteByte('=')
		vals := h.Values(name)
		if !negotiationField[name] {
			for j, v := range vals {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strings.TrimSpace(v))
			}
			continue
		}
		var parts []string
		for _, v := range vals {
			for _, p := range strings.Split(v, ",") {
				if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
					parts = append(parts, p)
				}
			}
		}
		if len(vals) > 0 && len(parts) == 0 {
			// A negotiation field sent empty is not one absent (RFC 9111
			// §4.1, RFC 9110 §12.5.3): an empty Accept-Encoding accepts
			// no coding, an absent one any. A control byte cannot come
			// from a field value.
			b.WriteByte(1)
			continue
		}
		sort.Strings(parts)
		b.WriteString(strings.Join(parts, ","))
	}
	return b.String()
}

// negotiationField lists the (canonical) request fields whose values are
// case-insensitive, order-insensitive lists (RFC 9110 §12.5).
var negotiationField = map[string]bool{
	"Accept": true, "Accept-Encoding": true, "Accept-Language": true, "Accept-Charset": true,
}
