package origin

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TTLClass names how long a response may be reused. Origins pick a class per
// endpoint instead of scattering max-age numbers; the edge honours the
// resulting Cache-Control (s-maxage for itself, max-age for browsers).
type TTLClass int

// TTL classes. Shared caches get a longer lifetime than browsers for the
// classes whose writes are followed by a purge: the edge can be told to
// forget, a browser cannot.
const (
	// NoStore: never stored anywhere (errors, per-user data use Private).
	NoStore TTLClass = iota
	// Short: 30 s in browsers, 60 s at the edge. Lists that change often.
	Short
	// Medium: 5 min in browsers, 15 min at the edge. Profiles, single items.
	Medium
	// Long: 1 day in browsers, 7 days at the edge. Static assets that keep
	// their URL across deploys (purged on deploy).
	Long
	// Immutable: one year, never revalidated. Content-addressed URLs.
	Immutable
)

// String returns the class name used in docs and logs.
func (c TTLClass) String() string {
	switch c {
	case NoStore:
		return "no-store"
	case Short:
		return "short"
	case Medium:
		return "medium"
	case Long:
		return "long"
	case Immutable:
		return "immutable"
	}
	return "unknown"
}

// MaxAge is the browser lifetime of the class.
func (c TTLClass) MaxAge() time.Duration {
	switch c {
	case Short:
		return 30 * time.Second
	case Medium:
		return 5 * time.Minute
	case Long:
		return 24 * time.Hour
	case Immutable:
		return 365 * 24 * time.Hour
	}
	return 0
}

// SharedMaxAge is the edge (shared cache) lifetime of the class.
func (c TTLClass) SharedMaxAge() time.Duration {
	switch c {
	case Short:
		return 60 * time.Second
	case Medium:
		return 15 * time.Minute
	case Long:
		return 7 * 24 * time.Hour
	case Immutable:
		return 365 * 24 * time.Hour
	}
	return 0
}

// CacheControl returns the Cache-Control value for the class.
func (c TTLClass) CacheControl() string {
	secs := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
	switch c {
	case Short:
		// A short list may be a little stale while the edge refetches, and
		// served for a few minutes if the origin is down.
		return "public, max-age=" + secs(c.MaxAge()) + ", s-maxage=" + secs(c.SharedMaxAge()) +
			", stale-while-revalidate=30, stale-if-error=300"
	case Medium:
		return "public, max-age=" + secs(c.MaxAge()) + ", s-maxage=" + secs(c.SharedMaxAge()) +
			", stale-while-revalidate=60, stale-if-error=3600"
	case Long:
		return "public, max-age=" + secs(c.MaxAge()) + ", s-maxage=" + secs(c.SharedMaxAge()) +
			", stale-while-revalidate=3600, stale-if-error=604800"
	case Immutable:
		return "public, max-age=" + secs(c.MaxAge()) + ", immutable"
	}
	return "no-store"
}

// SetCache sets Cache-Control on h for the class.
func SetCache(h http.Header, c TTLClass) {
	h.Set("Cache-Control", c.CacheControl())
}

// SetPrivate marks a per-user response: no shared cache may store it and
// browsers must not keep it either (it would outlive a logout).
func SetPrivate(h http.Header) {
	h.Set("Cache-Control", "private, no-store")
}

// SurrogateKeyHeader carries space-separated tags for the edge cache; a
// purge by tag drops every cached response that carried the tag.
const SurrogateKeyHeader = "Surrogate-Key"

// SetSurrogateKeys adds keys to h's Surrogate-Key header, keeping keys
// already there and dropping duplicates and keys that are not a plain token
// (a space or control character would split or corrupt the list).
func SetSurrogateKeys(h http.Header, keys ...string) {
	have := strings.Fields(h.Get(SurrogateKeyHeader))
	seen := make(map[string]bool, len(have)+len(keys))
	for _, k := range have {
		seen[k] = true
	}
	for _, k := range keys {
		if !validSurrogateKey(k) || seen[k] {
			continue
		}
		seen[k] = true
		have = append(have, k)
	}
	if len(have) == 0 {
		return
	}
	h.Set(SurrogateKeyHeader, strings.Join(have, " "))
}

func validSurrogateKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' {
			return false
		}
	}
	return true
}
