package cdn

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

var (
	acceptRanges = []string{"bytes"}
	// Shared, clipped header values: a handler appending gets a copy.
	xcacheValues = map[string][]string{
		resHit: {resHit}, resMiss: {resMiss}, resStale: {resStale},
		resRevalidated: {resRevalidated}, resBypass: {resBypass},
	}
)

func xcacheValue(v string) []string {
	if s, ok := xcacheValues[v]; ok {
		return s
	}
	return []string{v}
}

// openBody opens a stored body file and checks it is still the regular
// file of size bytes the index describes: a truncated body sent with the
// stored Content-Length would cut every response to it short.
func openBody(path string, size int64) (*os.File, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && (!fi.Mode().IsRegular() || fi.Size() != size) {
		err = fmt.Errorf("%s: %d bytes on disk, %d stored", path, fi.Size(), size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

// compressEntry stores the enc rendition of e and returns the updated
// entry, or nil when another request is already compressing it (this one is
// then served identity) or compression failed.
func (h *handler) compressEntry(e *store.Entry, enc string) *store.Entry {
	c := h.c
	fk := "z\x00" + e.Key + "\x00" + e.Variant + "\x00" + enc
	f, ok := c.tryJoin(fk, e.Key)
	if !ok {
		return nil
	}
	defer c.release(fk, f)
	src, err := openBody(e.Path(), e.Size)
	if err != nil {
		return nil // serveEntry finds the identity body broken too
	}
	defer src.Close()
	wr, err := c.store.Create()
	if err != nil {
		c.ioError("create", e.Key, err)
		return nil
	}
	if err := c.enc.compress(enc, wr, src); err != nil {
		wr.Abort()
		if wr.Err() != nil {
			c.ioError("write", e.Key, err)
		}
		return nil
	}
	// Under purgeMu: the rendition replaces e with a copy, which a purge
	// between selecting e and removing (or invalidating) it would miss.
	c.purgeMu.RLock()
	ne, err := wr.CommitEncoding(e, enc)
	c.purgeMu.RUnlock()
	if err != nil {
		if err != store.ErrStale {
			c.ioError("commit", e.Key, err)
		}
		return nil
	}
	c.m.compress.WithLabelValues(enc).Inc()
	return ne
}

// serveEntry answers r from a stored entry: headers with Age, X-Cache and
// Cache-Status, conditionals (304), HEAD, ranges on the identity body, and
// a compressed rendition when the client accepts one.
func (h *handler) serveEntry(w http.ResponseWriter, r *http.Request, e *store.Entry, xcache, status string, now time.Time) {
	c := h.c
	enc := ""
	if e.Compressible && r.Header.Get("Range") == "" &&
		e.Size >= c.cfg.Compression.MinSize.Int64() && e.Size <= c.cfg.Compression.MaxSize.Int64() {
		enc = negotiate(r.Header.Get("Accept-Encoding"), c.cfg.Compression.Encodings)
		if enc != "" {
			if _, ok := e.Encoding(enc); !ok {
				if ne := h.compressEntry(e, enc); ne != nil {
					e = ne
				} else {
					enc = ""
				}
			}
		}
	}
	size := e.Size
	if enc != "" {
		rend, _ := e.Encoding(enc)
		size = rend.Size
	}
	var file *os.File // nil when the body is in memory
	mem := c.store.Body(e, enc)
	if mem == nil {
		path := e.Path()
		if enc != "" {
			path = e.EncodingPath(enc)
		}
		f, err := openBody(path, size)
		if err != nil {
			// Evicted or purged between lookup and open, or the file was
			// removed, cut short or replaced behind the store's back:
			// drop the entry (a no-op if it is gone already) so the next
			// request fills it again, and fetch this one.
			c.ioError("read", e.Key, err)
			c.store.Remove([]*store.Entry{e})
			h.pass(w, r, resMiss, "store-read")
			return
		}
		defer f.Close()
		file = f
	}

	reqinfo.From(r.Context()).Set(reqinfo.FieldCache, xcache)
	c.m.result(xcache)
	hdr := w.Header()
	pass := c.cfg.PassSurrogateHeaders
	for k, v := range e.Header {
		switch k {
		case hdrOutpostCC, hdrCDNCC:
			continue // for this cache only
		case "Surrogate-Key", "Cache-Tag":
			if !pass {
				continue
			}
		}
		hdr[k] = v
	}
	if h.rc.StripSetCookie {
		delete(hdr, "Set-Cookie")
	}
	age := c.currentAge(e, now) / time.Second
	hdr["Age"] = []string{strconv.FormatInt(int64(age), 10)}
	hdr["X-Cache"] = xcacheValue(xcache)
	ttl := int64((e.Lifetime - c.currentAge(e, now)) / time.Second)
	// After the members of the caches before this one (RFC 9211 §2),
	// appended to a copy: the stored slice is shared by every hit.
	cs := e.Header["Cache-Status"]
	cs = cs[:len(cs):len(cs)]
	if strings.HasPrefix(status, "hit") {
		hdr["Cache-Status"] = append(cs, "Outpost; "+status+"; ttl="+strconv.FormatInt(ttl, 10))
	} else {
		hdr["Cache-Status"] = append(cs, "Outpost; "+status)
	}
	if e.Compressible {
		varyOnEncoding(hdr)
	}
	if enc != "" {
		hdr["Content-Encoding"] = []string{enc}
		if et := e.Header.Get("ETag"); et != "" {
			hdr["Etag"] = []string{suffixETag(et, enc)}
		}
	}
	if e.Status == http.StatusOK && enc == "" {
		hdr["Accept-Ranges"] = acceptRanges
		if r.Header.Get("Range") != "" || r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "" {
			// Ranges (single, multipart, If-Range) and the rarer
			// preconditions: net/http implements them exactly.
			if _, ok := hdr["Content-Type"]; !ok {
				hdr["Content-Type"] = nil // no sniffing: serve what the origin sent
			}
			delete(hdr, "Content-Length")
			var lm time.Time
			if t, ok := parseHTTPDate(e.Header.Get("Last-Modified")); ok {
				lm = t
			}
			if ir := r.Header.Get("If-Range"); ir != "" && ir[0] != '"' && !strings.HasPrefix(ir, "W/") {
				if _, strong := strongLastModified(e.Header); !strong {
					// A date only matches a strong Last-Modified (RFC
					// 9110 §13.1.5), which net/http does not check:
					// the condition is false, so the whole body.
					r = r.Clone(r.Context())
					r.Header.Del("Range")
				}
			}
			cw := &fileCountingWriter{countingWriter{ResponseWriter: w}}
			var body io.ReadSeeker = file
			if file == nil {
				body = bytes.NewReader(mem)
			}
			http.ServeContent(cw, r, "", lm, body)
			c.m.servedB.Add(float64(cw.n))
			return
		}
	}
	// Conditionals only apply to 2xx (RFC 9110 §13.2.1): a stored 404
	// is never answered with 304.
	if e.Status >= 200 && e.Status < 300 && notModified(r, hdr) {
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding"} {
			delete(hdr, k)
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if cl := e.Header["Content-Length"]; enc == "" && len(cl) == 1 && sameLength(cl[0], size) {
		hdr["Content-Length"] = cl // the stored value, shared and clipped as the rest
	} else {
		hdr["Content-Length"] = []string{strconv.FormatInt(size, 10)}
	}
	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead || e.Status == http.StatusNoContent {
		return
	}
	// One write for an in-memory body (header and body leave together);
	// sendfile(2) for a file.
	var n int64
	if file == nil {
		m, _ := w.Write(mem)
		n = int64(m)
	} else if _, ok := w.(io.ReaderFrom); ok {
		n, _ = io.Copy(w, file) // sendfile(2) through the connection
	} else {
		// A wrapper hid the connection's ReadFrom: copy through a pooled
		// buffer rather than allocate 32 KiB per response.
		bp := c.bufs.Get().(*[]byte)
		n, _ = io.CopyBuffer(writerOnly{w}, readerOnly{file}, *bp)
		c.bufs.Put(bp)
	}
	c.m.servedB.Add(float64(n))
}

// notModified evaluates If-None-Match (weak comparison) and, without it,
// If-Modified-Since against the response header (RFC 9110 §13.2.2).
func notModified(r *http.Request, hdr http.Header) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		et := hdr.Get("Etag")
		if et == "" {
			return false
		}
		for _, c := range strings.Split(inm, ",") {
			c = strings.TrimSpace(c)
			if c == "*" || strings.TrimPrefix(c, "W/") == strings.TrimPrefix(et, "W/") {
				return true
			}
		}
		return false
	}
	ims, ok := parseHTTPDate(r.Header.Get("If-Modified-Since"))
	if !ok {
		return false
	}
	lm, ok := parseHTTPDate(hdr.Get("Last-Modified"))
	if !ok {
		// Without Last-Modified a cache uses the stored Date (RFC 9111
		// §4.3.2), recorded on arrival when the origin sent none.
		lm, ok = parseHTTPDate(hdr.Get("Date"))
	}
	return ok && !lm.After(ims)
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// fileCountingWriter adds ReadFrom, which keeps sendfile(2) for bodies
// served from files.
type fileCountingWriter struct{ countingWriter }

// ReadFrom passes the file to the connection's ReadFrom (sendfile).
func (c *fileCountingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	}
	c.n += n
	return n, err
}

// sameLength reports whether a stored Content-Length value is n.
func sameLength(v string, n int64) bool {
	m, ok := parseContentLength(v)
	return ok && m == n
}
