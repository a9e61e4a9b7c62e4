package cdn

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/httperr"
)

// PurgeRequest selects entries to purge; the selections add up.
type PurgeRequest struct {
	// URLs are absolute ("http://www.example.com/static/app.css"); every
	// stored variant goes, for both http and https.
	URLs []string `json:"urls,omitempty"`
	// Prefixes are absolute URL prefixes ("http://www.example.com/static/"),
	// matched on host, path and query, for both schemes.
	Prefixes []string `json:"prefixes,omitempty"`
	// Tags match Surrogate-Key / Cache-Tag values.
	Tags []string `json:"tags,omitempty"`
	// All purges everything.
	All bool `json:"all,omitempty"`
	// Soft marks entries stale instead of deleting them: they are served
	// stale while one background revalidation refreshes them.
	Soft bool `json:"soft,omitempty"`
}

// PurgeResult says what a purge did.
type PurgeResult struct {
	Purged int  `json:"purged"` // entries deleted or (soft) invalidated
	Soft   bool `json:"soft"`
}

// Purge removes (or with Soft, invalidates) the selected entries.
func (c *Cache) Purge(ctx context.Context, req PurgeRequest) (PurgeResult, error) {
	if !req.All && len(req.URLs) == 0 && len(req.Prefixes) == 0 && len(req.Tags) == 0 {
		return PurgeResult{}, fmt.Errorf("nothing selected: give urls, prefixes, tags or all")
	}
	sel, err := compileSelection(req)
	if err != nil {
		return PurgeResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return PurgeResult{}, err
	}
	c.purgeMu.Lock()
	defer c.purgeMu.Unlock()
	c.purgeLog.add(c.purgeSeq.Add(1), !req.Soft, sel)
	if !req.Soft {
		c.detachFills(sel)
	}
	var found []*store.Entry
	switch {
	case sel.all:
		found = c.store.Select(func(*store.Entry) bool { return true })
	case len(sel.prefixes) > 0 || len(sel.tags) > 0:
		found = c.store.Select(func(e *store.Entry) bool { return sel.scanMatch(e.Key, e.Tags) })
	}
	if !sel.all {
		// Exact URLs come from the key index rather than a scan.
		for _, k := range sel.keys {
			found = append(found, c.store.Variants(k)...)
		}
		slices.SortFunc(found, func(a, b *store.Entry) int { return strings.Compare(a.Key+"\x00"+a.Variant, b.Key+"\x00"+b.Variant) })
		found = slices.CompactFunc(found, func(a, b *store.Entry) bool { return a == b })
	}
	kind := "url"
	switch {
	case req.All:
		kind = "all"
	case len(req.Tags) > 0:
		kind = "tag"
	case len(req.Prefixes) > 0:
		kind = "prefix"
	}
	n := 0
	if req.Soft {
		for _, e := range found {
			if e.Invalidated {
				continue
			}
			if _, err := c.store.Update(e, func(m *store.Meta) { m.Invalidated = true }); err == nil {
				n++
			}
		}
	} else {
		n = c.store.Remove(found)
	}
	c.m.purged.WithLabelValues(kind).Add(float64(n))
	c.log.Info("purge", "kind", kind, "soft", req.Soft, "entries", n)
	return PurgeResult{Purged: n, Soft: req.Soft}, nil
}

// purgeSel is a purge request compiled for matching: against stored
// entries when the purge runs, and against in-flight fills when they
// publish (see purgeLog), so both agree on what a purge covers.
type purgeSel struct {
	all      bool
	keys     []string // full cache keys, both schemes
	prefixes []string // scheme-less key prefixes
	tags     []string
}

func compileSelection(req PurgeRequest) (*purgeSel, error) {
	sel := &purgeSel{all: req.All, tags: slices.Clone(req.Tags)}
	for _, raw := range req.URLs {
		k, err := purgeKey(raw)
		if err != nil {
			return nil, err
		}
		sel.keys = append(sel.keys, "http://"+k, "https://"+k)
	}
	for _, raw := range req.Prefixes {
		k, err := purgeKey(raw)
		if err != nil {
			return nil, err
		}
		sel.prefixes = append(sel.prefixes, k)
	}
	return sel, nil
}

// scanMatch reports whether an object with key and tags is selected by a
// prefix or a tag, the parts of a selection that need a scan of the store.
func (s *purgeSel) scanMatch(key string, tags []string) bool {
	rest := strings.TrimPrefix(strings.TrimPrefix(key, "http://"), "https://")
	for _, p := range s.prefixes {
		if strings.HasPrefix(rest, p) {
			return true
		}
	}
	for _, t := range tags {
		if slices.Contains(s.tags, t) {
			return true
		}
	}
	return false
}

// matches reports whether the selection covers an object with key and tags.
func (s *purgeSel) matches(key string, tags []string) bool {
	return s.all || slices.Contains(s.keys, key) || s.scanMatch(key, tags)
}

// size is roughly the memory the selection holds.
func (s *purgeSel) size() int {
	n := 0
	for _, l := range [][]string{s.keys, s.prefixes, s.tags} {
		for _, v := range l {
			n += len(v)
		}
	}
	return n
}

// The purge log is bounded: a node purging faster than its longest fill
// lasts falls back to treating the purges it forgot as matching, and a
// selection too big to keep is kept as "all" (at most about 1 MiB).
const (
	purgeLogLen     = 256
	purgeLogSelSize = 4 << 10
)

// purgeLog remembers the recent purges, so a fill can tell at publish
// time which purges since its start cover it: its tags are only known
// once its response headers arrive, long after a purge may have run.
// It is guarded by Cache.purgeMu.
type purgeLog struct {
	recs     []purgeRec // oldest first, consecutive seqs
	lost     uint64     // newest seq dropped from the log
	lostHard uint64     // newest seq of a hard purge dropped from the log
}

type purgeRec struct {
	seq  uint64
	hard bool
	sel  *purgeSel
}

func (l *purgeLog) add(seq uint64, hard bool, sel *purgeSel) {
	if sel.size() > purgeLogSelSize {
		sel = &purgeSel{all: true}
	}
	if len(l.recs) == purgeLogLen {
		old := l.recs[0]
		l.lost = old.seq
		if old.hard {
			l.lostHard = old.seq
		}
		l.recs = append(l.recs[:0], l.recs[1:]...)
	}
	l.recs = append(l.recs, purgeRec{seq: seq, hard: hard, sel: sel})
}

// since says how the purges after seq treat an object with key and tags:
// hard when one removed it, soft when one only invalidated it.
func (l *purgeLog) since(seq uint64, key string, tags []string) (hard, soft bool) {
	if l.lost > seq {
		// Some purges since the mark were forgotten: assume they matched.
		hard, soft = l.lostHard > seq, true
	}
	for i := len(l.recs) - 1; i >= 0 && l.recs[i].seq > seq; i-- {
		if r := l.recs[i]; r.sel.matches(key, tags) {
			hard = hard || r.hard
			soft = true
		}
	}
	return hard, soft
}

// Check reports the first URL or prefix the cache could not key (not an
// absolute http(s) URL, or a host no stored entry can have), so a purge
// can be refused before anything is purged.
func (req PurgeRequest) Check() error {
	_, err := compileSelection(req)
	return err
}

// purgeKey turns an absolute URL into the scheme-less part of a cache key.
func purgeKey(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("want an absolute http(s) URL, got %q", raw)
	}
	host, ok := normalizeHost(u.Host, u.Scheme == "https")
	if !ok {
		return "", fmt.Errorf("invalid host in %q", raw)
	}
	// An empty path is the root, for prefixes too: "http://example.com"
	// must not select "example.com.other.test".
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	k := host + p
	if u.RawQuery != "" || u.ForceQuery {
		k += "?" + u.RawQuery
	}
	return k, nil
}

// PurgeHandler serves POST /v1/purge: a JSON PurgeRequest in, a JSON
// PurgeResult ({"purged": N, "soft": false}) out. Authentication is the
// admin API's job.
func (c *Cache) PurgeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			httperr.Write(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		var req PurgeRequest
		if err := dec.Decode(&req); err != nil {
			httperr.WriteBodyError(w, r, "invalid purge request body: "+err.Error(), err)
			return
		}
		res, err := c.Purge(r.Context(), req)
		if err != nil {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
}
