package cdn

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// encoder is a pooled compressor.
type encoder interface {
	io.WriteCloser
	Reset(w io.Writer)
}

// encoders pools compressors per encoding: building a brotli or zstd
// encoder costs far more than compressing a small asset.
type encoders struct {
	level int
	pools map[string]*sync.Pool
}

func newEncoders(level int) *encoders {
	e := &encoders{level: level, pools: make(map[string]*sync.Pool, 3)}
	e.pools["gzip"] = &sync.Pool{New: func() any {
		w, err := gzip.NewWriterLevel(io.Discard, level)
		if err != nil {
			w = gzip.NewWriter(io.Discard)
		}
		return encoder(w)
	}}
	e.pools["br"] = &sync.Pool{New: func() any {
		return encoder(brotli.NewWriterLevel(io.Discard, level))
	}}
	e.pools["zstd"] = &sync.Pool{New: func() any {
		w, err := zstd.NewWriter(io.Discard,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return nil
		}
		return encoder(w)
	}}
	return e
}

// compress copies src to dst through the named encoder.
func (e *encoders) compress(name string, dst io.Writer, src io.Reader) error {
	p := e.pools[name]
	enc, _ := p.Get().(encoder)
	if enc == nil {
		return errUnknownEncoding
	}
	enc.Reset(dst)
	_, err := io.Copy(enc, src)
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	enc.Reset(io.Discard)
	p.Put(enc)
	return err
}

type encodingError string

func (e encodingError) Error() string { return string(e) }

const errUnknownEncoding = encodingError("cdn: unknown encoding")

// compressible reports whether a stored header allows edge compression.
func (c *Cache) compressible(h http.Header) bool {
	cc := &c.cfg.Compression
	if cc.Enabled == nil || !*cc.Enabled || len(cc.Encodings) == 0 {
		return false
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	if h.Get("Content-Range") != "" {
		return false
	}
	return compressibleType(h.Get("Content-Type"))
}

// negotiate picks the best encoding the client accepts (RFC 9110 §12.5.3):
// highest q first, ties broken by the server's preference order. "" means
// identity.
func negotiate(accept string, prefs []string) string {
	if accept == "" {
		return ""
	}
	// The q the client gave each of prefs (-1: not named; the last
	// mention counts), without allocating: this runs on every hit of a
	// compressible object.
	var qbuf [4]float64
	q := qbuf[:0]
	if len(prefs) > len(qbuf) {
		q = make([]float64, 0, len(prefs))
	}
	for range prefs {
		q = append(q, -1)
	}
	star := -1.0
	for rest := accept; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		name, params, _ := strings.Cut(part, ";")
		name = strings.TrimSpace(name)
		v := 1.0
		for params != "" {
			var p string
			p, params, _ = strings.Cut(params, ";")
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && httpwire.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0
				}
				v = f
			}
		}
		if name == "*" {
			star = v
			continue
		}
		for i, p := range prefs {
			if httpwire.EqualFold(name, p) {
				q[i] = v
			}
		}
	}
	best, bestQ := "", 0.0
	for i, p := range prefs {
		v := q[i]
		if v < 0 {
			if star < 0 {
				continue
			}
			v = star
		}
		if v > bestQ {
			best, bestQ = p, v
		}
	}
	return best
}

// suffixETag marks an ETag as belonging to a compressed rendition, so a
// validator never matches a different representation: "abc" → "abc-br".
func suffixETag(etag, enc string) string {
	if len(etag) >= 2 && strings.HasSuffix(etag, `"`) {
		return etag[:len(etag)-1] + "-" + enc + `"`
	}
	return etag
}

// varyOnEncoding adds Accept-Encoding to the Vary field of h unless it is
// there (or Vary is "*"): on every hit of a compressible object, so
// without allocating for the common case.
func varyOnEncoding(h http.Header) {
	for _, v := range h["Vary"] {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if f = strings.TrimSpace(f); f == "*" || httpwire.EqualFold(f, "Accept-Encoding") {
				return
			}
		}
	}
	if len(h["Vary"]) == 0 {
		h["Vary"] = varyAcceptEncoding
		return
	}
	h["Vary"] = []string{strings.Join(h["Vary"], ", ") + ", Accept-Encoding"}
}

// varyAcceptEncoding is shared: its length is its capacity, so a handler
// appending gets a copy.
var varyAcceptEncoding = []string{"Accept-Encoding"}
