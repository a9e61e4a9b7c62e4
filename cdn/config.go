package cdn

import (
	"fmt"
	"mime"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
)

// Config is the node-wide `cache:` section. It configures the one disk
// store every cached route shares.
type Config struct {
	// Dir holds the index and the body files. Default /var/cache/outpost.
	Dir string `yaml:"dir"`
	// MaxSize bounds the bytes of stored bodies. Default 1GiB.
	MaxSize units.Size `yaml:"max_size"`
	// MaxObjects bounds the number of stored entries. Default 1000000.
	MaxObjects int `yaml:"max_objects"`
	// MaxObjectSize: larger responses are passed through, not stored.
	// Default max_size/4 (256MiB for the default max_size).
	MaxObjectSize units.Size `yaml:"max_object_size"`
	// MemoryBodies bounds the memory used to keep small hot bodies (on top
	// of their files) so a hit makes no system call. Default 64MiB; "0"
	// disables.
	MemoryBodies *units.Size `yaml:"memory_bodies"`
	// MemoryBodyMax: bodies up to this size may be kept in memory.
	// Default 256KiB.
	MemoryBodyMax units.Size `yaml:"memory_body_max"`
	// Eviction is the eviction/admission policy: s3fifo (default; lock-free
	// hits, filters one-hit wonders) or lru.
	Eviction string `yaml:"eviction"`
	// Grace is how long past its freshness (and any stale-if-error) an entry
	// may still be served when the origin is down, times out or returns 5xx.
	// Default 1h; "0s" disables.
	Grace *units.Duration `yaml:"grace"`
	// CoalesceWait bounds how long a request waits for a concurrent fetch of
	// the same object to produce its response headers before going to the
	// origin itself. Default 10s.
	CoalesceWait units.Duration `yaml:"coalesce_wait"`
	// RefreshTimeout bounds a background revalidation. Default 30s.
	RefreshTimeout units.Duration `yaml:"refresh_timeout"`
	// RangeFetchLimit: a Range request for an uncached object fetches the
	// whole object when it is at most this large, else passes through.
	// Default 64MiB.
	RangeFetchLimit units.Size `yaml:"range_fetch_limit"`
	// HeuristicFraction of (Date - Last-Modified) is the freshness lifetime
	// when the origin gives none (RFC 9111 §4.2.2). Default 0.1.
	HeuristicFraction float64 `yaml:"heuristic_fraction"`
	// HeuristicMax caps heuristic freshness. Default 24h.
	HeuristicMax units.Duration `yaml:"heuristic_max"`
	// AccessFlushInterval is how often batched access times reach the
	// index. Default 30s.
	AccessFlushInterval units.Duration `yaml:"access_flush_interval"`
	// PassSurrogateHeaders sends Surrogate-Key / Cache-Tag on to clients;
	// by default they are stripped. Default false.
	PassSurrogateHeaders bool `yaml:"pass_surrogate_headers"`
	// Compression of compressible bodies the origin sent uncompressed.
	Compression CompressionConfig `yaml:"compression"`
}

// CompressionConfig configures edge compression.
type CompressionConfig struct {
	// Enabled turns edge compression on. Default true.
	Enabled *bool `yaml:"enabled"`
	// Encodings in server preference order, among br, zstd, gzip.
	// Default [br, zstd, gzip].
	Encodings []string `yaml:"encodings"`
	// MinSize: smaller bodies are not compressed. Default 1KiB.
	MinSize units.Size `yaml:"min_size"`
	// MaxSize: larger bodies are not compressed. Default 32MiB.
	MaxSize units.Size `yaml:"max_size"`
	// Level is the compression level, 1 (fast) to 9 (small). Default 5.
	Level int `yaml:"level"`
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Dir == "" {
		c.Dir = "/var/cache/outpost"
	}
	if c.MaxSize == 0 {
		c.MaxSize = 1 << 30
	}
	if c.MaxObjects == 0 {
		c.MaxObjects = 1000000
	}
	if c.MaxObjectSize == 0 {
		c.MaxObjectSize = c.MaxSize / 4
	}
	if c.MemoryBodies == nil {
		m := units.Size(64 << 20)
		c.MemoryBodies = &m
	}
	if c.MemoryBodyMax == 0 {
		c.MemoryBodyMax = 256 << 10
	}
	if c.Eviction == "" {
		c.Eviction = store.PolicyS3FIFO
	}
	if c.Grace == nil {
		g := units.Duration(time.Hour)
		c.Grace = &g
	}
	if c.CoalesceWait == 0 {
		c.CoalesceWait = units.Duration(10 * time.Second)
	}
	if c.RefreshTimeout == 0 {
		c.RefreshTimeout = units.Duration(30 * time.Second)
	}
	if c.RangeFetchLimit == 0 {
		c.RangeFetchLimit = 64 << 20
	}
	if c.HeuristicFraction == 0 {
		c.HeuristicFraction = 0.1
	}
	if c.HeuristicMax == 0 {
		c.HeuristicMax = units.Duration(24 * time.Hour)
	}
	if c.AccessFlushInterval == 0 {
		c.AccessFlushInterval = units.Duration(30 * time.Second)
	}
	cc := &c.Compression
	if cc.Enabled == nil {
		t := true
		cc.Enabled = &t
	}
	if cc.Encodings == nil {
		cc.Encodings = []string{"br", "zstd", "gzip"}
	}
	if cc.MinSize == 0 {
		cc.MinSize = 1 << 10
	}
	if cc.MaxSize == 0 {
		cc.MaxSize = 32 << 20
	}
	if cc.Level == 0 {
		cc.Level = 5
	}
}

// Validate checks the section; paths are relative to `cache:`.
func (c *Config) Validate() error {
	var l configerr.List
	if c.Dir == "" {
		l.Addf("dir", "must be set")
	}
	if c.MaxSize < 1<<20 {
		l.Addf("max_size", "must be >= 1MiB, got %d bytes", c.MaxSize)
	}
	if c.MaxObjects < 1 {
		l.Addf("max_objects", "must be >= 1, got %d", c.MaxObjects)
	}
	if c.MaxObjectSize < 1 || c.MaxObjectSize > c.MaxSize {
		l.Addf("max_object_size", "must be between 1 byte and max_size (%d), got %d", c.MaxSize, c.MaxObjectSize)
	}
	if c.MemoryBodies != nil && *c.MemoryBodies < 0 {
		l.Addf("memory_bodies", "must be >= 0, got %d", *c.MemoryBodies)
	}
	if c.MemoryBodyMax < 0 {
		l.Addf("memory_body_max", "must be >= 0, got %d", c.MemoryBodyMax)
	}
	if c.Eviction != store.PolicyS3FIFO && c.Eviction != store.PolicyLRU {
		l.Addf("eviction", "unknown policy %q (want s3fifo, lru)", c.Eviction)
	}
	if c.Grace != nil && *c.Grace < 0 {
		l.Addf("grace", "must be >= 0, got %s", *c.Grace)
	}
	if c.CoalesceWait < 0 {
		l.Addf("coalesce_wait", "must be >= 0, got %s", c.CoalesceWait)
	}
	if c.RefreshTimeout <= 0 {
		l.Addf("refresh_timeout", "must be > 0, got %s", c.RefreshTimeout)
	}
	if c.RangeFetchLimit < 0 {
		l.Addf("range_fetch_limit", "must be >= 0, got %d", c.RangeFetchLimit)
	}
	if c.HeuristicFraction < 0 || c.HeuristicFraction > 1 {
		l.Addf("heuristic_fraction", "must be between 0 and 1, got %g", c.HeuristicFraction)
	}
	if c.HeuristicMax < 0 {
		l.Addf("heuristic_max", "must be >= 0, got %s", c.HeuristicMax)
	}
	if c.AccessFlushInterval <= 0 {
		l.Addf("access_flush_interval", "must be > 0, got %s", c.AccessFlushInterval)
	}
	cc := &c.Compression
	for i, e := range cc.Encodings {
		if !slices.Contains([]string{"br", "zstd", "gzip"}, e) {
			l.Addf(fmt.Sprintf("compression.encodings[%d]", i), "unknown encoding %q (want br, zstd, gzip)", e)
		}
	}
	if cc.MinSize < 0 || cc.MaxSize < cc.MinSize {
		l.Addf("compression.max_size", "must be >= min_size (%d), got %d", cc.MinSize, cc.MaxSize)
	}
	if cc.Level < 1 || cc.Level > 9 {
		l.Addf("compression.level", "must be between 1 and 9, got %d", cc.Level)
	}
	return l.Err()
}

// RouteConfig is a route's `cache:` block: how this route's responses are
// cached in the shared store.
type RouteConfig struct {
	// TTLRules are tried in order; the first whose path pattern and content
	// type match applies.
	TTLRules []TTLRule `yaml:"ttl_rules"`
	// DefaultTTL is the freshness when the origin gives none and no rule
	// matches. Default 0: only heuristic freshness (Last-Modified).
	DefaultTTL units.Duration `yaml:"default_ttl"`
	// StripSetCookie removes Set-Cookie from responses so they can be
	// stored; without it a response with Set-Cookie is never stored.
	// Default false.
	StripSetCookie bool `yaml:"strip_set_cookie"`
}

// TTLRule sets freshness for matching responses. The classes operators use:
// short (default 60s, max 60s: feeds, trending), medium (default 10m, max
// 15m: profiles, counts), long (default 24h, max 7d: images, CSS, JS, fonts).
type TTLRule struct {
	// Paths are glob patterns: "*" matches within one path segment, "**"
	// across segments; a pattern without "/" matches the last segment
	// ("*.css"). Empty matches every path.
	Paths []string `yaml:"paths"`
	// ContentTypes are media types ("text/css", "image/*"). Empty matches all.
	ContentTypes []string `yaml:"content_types"`
	// Class presets Default and Max: short, medium or long.
	Class string `yaml:"class"`
	// Default is the TTL when the origin gives no freshness.
	Default units.Duration `yaml:"default"`
	// Min raises a shorter origin freshness to this.
	Min units.Duration `yaml:"min"`
	// Max caps the origin freshness.
	Max units.Duration `yaml:"max"`
	// Override replaces whatever the origin said with this TTL. An origin
	// no-store or private still wins unless OverridePrivate is set.
	Override units.Duration `yaml:"override"`
	// OverridePrivate lets Override store responses the origin marked
	// no-store, private or no-cache (logged once per rule). Default false.
	OverridePrivate bool `yaml:"override_private"`
}

var ttlClasses = map[string][2]time.Duration{
	"short":  {60 * time.Second, 60 * time.Second},
	"medium": {10 * time.Minute, 15 * time.Minute},
	"long":   {24 * time.Hour, 7 * 24 * time.Hour},
}

// SetDefaults fills rule values from their classes.
func (rc *RouteConfig) SetDefaults() {
	for i := range rc.TTLRules {
		r := &rc.TTLRules[i]
		if c, ok := ttlClasses[r.Class]; ok {
			if r.Default == 0 && r.Override == 0 {
				r.Default = units.Duration(c[0])
			}
			if r.Max == 0 && r.Override == 0 {
				r.Max = units.Duration(c[1])
			}
		}
	}
}

// Validate checks the block; paths are relative to the route's `cache:`.
func (rc *RouteConfig) Validate() error {
	var l configerr.List
	if rc.DefaultTTL < 0 {
		l.Addf("default_ttl", "must be >= 0, got %s", rc.DefaultTTL)
	}
	for i, r := range rc.TTLRules {
		p := fmt.Sprintf("ttl_rules[%d]", i)
		if r.Class != "" {
			if _, ok := ttlClasses[r.Class]; !ok {
				l.Addf(p+".class", "unknown class %q (want short, medium, long)", r.Class)
			}
		}
		for j, pat := range r.Paths {
			if _, err := compileGlob(pat); err != nil {
				l.Addf(fmt.Sprintf("%s.paths[%d]", p, j), "%v", err)
			}
		}
		for j, ct := range r.ContentTypes {
			if !validMediaPattern(ct) {
				l.Addf(fmt.Sprintf("%s.content_types[%d]", p, j), "want a media type such as \"text/css\" or \"image/*\", got %q", ct)
			}
		}
		for _, f := range []struct {
			name string
			v    units.Duration
		}{{"default", r.Default}, {"min", r.Min}, {"max", r.Max}, {"override", r.Override}} {
			if f.v < 0 {
				l.Addf(p+"."+f.name, "must be >= 0, got %s", f.v)
			}
		}
		if r.Max > 0 && r.Min > r.Max {
			l.Addf(p+".min", "must be <= max (%s), got %s", r.Max, r.Min)
		}
		if r.OverridePrivate && r.Override == 0 {
			l.Addf(p+".override_private", "needs override to be set")
		}
	}
	return l.Err()
}

func validMediaPattern(s string) bool {
	t, sub, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "/")
	return ok && t != "" && sub != "" && !strings.ContainsAny(s, " ;,")
}

// compileGlob turns a path pattern into an anchored regexp.
func compileGlob(pat string) (*regexp.Regexp, error) {
	if pat == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	var b strings.Builder
	b.WriteString("^")
	if !strings.Contains(pat, "/") {
		b.WriteString("(?:.*/)?") // basename pattern
	}
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; c {
		case '*':
			if i+1 < len(pat) && pat[i+1] == '*' {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// compiledRule is a TTLRule ready for matching.
type compiledRule struct {
	TTLRule
	index int
	paths []*regexp.Regexp
	types []string // lowercased; "image/*" kept as a prefix pattern
}

func compileRules(rules []TTLRule) []compiledRule {
	out := make([]compiledRule, 0, len(rules))
	for i, r := range rules {
		cr := compiledRule{TTLRule: r, index: i}
		for _, p := range r.Paths {
			if re, err := compileGlob(p); err == nil {
				cr.paths = append(cr.paths, re)
			}
		}
		for _, t := range r.ContentTypes {
			cr.types = append(cr.types, strings.ToLower(strings.TrimSpace(t)))
		}
		out = append(out, cr)
	}
	return out
}

// match returns the first rule matching path and the response content type.
func matchRule(rules []compiledRule, path, contentType string) *compiledRule {
	mt := ""
	if contentType != "" {
		if m, _, err := mime.ParseMediaType(contentType); err == nil {
			mt = m
		}
	}
	for i := range rules {
		r := &rules[i]
		if len(r.paths) > 0 && !slices.ContainsFunc(r.paths, func(re *regexp.Regexp) bool { return re.MatchString(path) }) {
			continue
		}
		if len(r.types) > 0 && !slices.ContainsFunc(r.types, func(t string) bool {
			if p, ok := strings.CutSuffix(t, "/*"); ok {
				return strings.HasPrefix(mt, p+"/")
			}
			return t == mt
		}) {
			continue
		}
		return r
	}
	return nil
}
