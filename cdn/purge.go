package cdn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	var keys, prefixes []string
	for _, raw := range req.URLs {
		k, err := purgeKey(raw, false)
		if err != nil {
			return PurgeResult{}, err
		}
		keys = append(keys, "http://"+k, "https://"+k)
	}
	for _, raw := range req.Prefixes {
		k, err := purgeKey(raw, true)
		if err != nil {
			return PurgeResult{}, err
		}
		prefixes = append(prefixes, k)
	}
	if err := ctx.Err(); err != nil {
		return PurgeResult{}, err
	}
	c.purgeMu.Lock()
	defer c.purgeMu.Unlock()
	c.purgeSeq.Add(1)
	if !req.Soft {
		c.hardSeq.Add(1)
		c.detachFills()
	}
	var sel []*store.Entry
	switch {
	case req.All:
		sel = c.store.Select(func(*store.Entry) bool { return true })
	case len(prefixes) > 0 || len(req.Tags) > 0:
		sel = c.store.Select(func(e *store.Entry) bool {
			if len(prefixes) > 0 {
				rest := strings.TrimPrefix(strings.TrimPrefix(e.Key, "http://"), "https://")
				for _, p := range prefixes {
					if strings.HasPrefix(rest, p) {
						return true
					}
				}
			}
			for _, t := range e.Tags {
				if slices.Contains(req.Tags, t) {
					return true
				}
			}
			return false
		})
	}
	if !req.All {
		for _, k := range keys {
			sel = append(sel, c.store.Variants(k)...)
		}
		slices.SortFunc(sel, func(a, b *store.Entry) int { return strings.Compare(a.Key+"\x00"+a.Variant, b.Key+"\x00"+b.Variant) })
		sel = slices.CompactFunc(sel, func(a, b *store.Entry) bool { return a == b })
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
		for _, e := range sel {
			if e.Invalidated {
				continue
			}
			if _, err := c.store.Update(e, func(m *store.Meta) { m.Invalidated = true }); err == nil {
				n++
			}
		}
	} else {
		n = c.store.Remove(sel)
	}
	c.m.purged.WithLabelValues(kind).Add(float64(n))
	c.log.Info("purge", "kind", kind, "soft", req.Soft, "entries", n)
	return PurgeResult{Purged: n, Soft: req.Soft}, nil
}

// Check reports the first URL or prefix the cache could not key (not an
// absolute http(s) URL, or a host no stored entry can have), so a purge
// can be refused before anything is purged.
func (req PurgeRequest) Check() error {
	for _, list := range []struct {
		raws   []string
		prefix bool
	}{{req.URLs, false}, {req.Prefixes, true}} {
		for _, raw := range list.raws {
			if _, err := purgeKey(raw, list.prefix); err != nil {
				return err
			}
		}
	}
	return nil
}

// purgeKey turns an absolute URL into the scheme-less part of a cache key.
func purgeKey(raw string, prefix bool) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("want an absolute http(s) URL, got %q", raw)
	}
	host, ok := normalizeHost(u.Host, u.Scheme == "https")
	if !ok {
		return "", fmt.Errorf("invalid host in %q", raw)
	}
	p := u.EscapedPath()
	if p == "" && !prefix {
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
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		var req PurgeRequest
		if err := dec.Decode(&req); err != nil {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", "invalid purge request body", err.Error())
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
