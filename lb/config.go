package lb

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
)

// PoolConfig is one pool: `pools: {NAME: PoolConfig}` in the node config.
type PoolConfig struct {
	// Backends are the instances of the origin service. At least one.
	Backends []BackendConfig `yaml:"backends"`
	// Policy picks a backend per request: round_robin (default),
	// least_connections, ip_hash, consistent_hash or p2c.
	Policy string `yaml:"policy"`
	// HashKey is what consistent_hash hashes: "uri" (default, path and
	// query), "header:NAME" or "cookie:NAME". A request without the header or
	// cookie falls back to its client IP.
	HashKey   string          `yaml:"hash_key"`
	Health    HealthConfig    `yaml:"health"`
	Outlier   OutlierConfig   `yaml:"outlier"`
	Retries   RetryConfig     `yaml:"retries"`
	Timeouts  TimeoutConfig   `yaml:"timeouts"`
	Transport TransportConfig `yaml:"transport"`
	Sticky    StickyConfig    `yaml:"sticky"`
}

// BackendConfig is one backend instance.
type BackendConfig struct {
	// URL is http:// or https:// host:port with an optional path prefix that
	// is prepended to every request path.
	URL string `yaml:"url"`
	// Weight is the backend's relative share, 1..1000; default 1.
	Weight int `yaml:"weight"`
	// Zone is an optional label (region, rack) shown in the admin API.
	Zone string `yaml:"zone"`
	// ID names the backend in the admin API, metrics and sticky cookies;
	// letters, digits and ".-_:". Default: the URL's host:port.
	ID string `yaml:"id"`
}

// HealthConfig configures active health checks. Checks are off when Path is
// empty; backends are then healthy unless passively ejected.
type HealthConfig struct {
	// Path is requested with GET on each backend, e.g. "/healthz". It is
	// sent as is: the backend URL's path prefix is not applied.
	Path string `yaml:"path"`
	// ExpectStatus is the accepted status range, "200-399" (default) or a
	// single code such as "204".
	ExpectStatus string `yaml:"expect_status"`
	// ExpectBody, if set, must occur in the first 64 KiB of the body.
	ExpectBody string `yaml:"expect_body"`
	// Interval between checks of one backend; default 5s.
	Interval units.Duration `yaml:"interval"`
	// Jitter is a random extra delay in [0, jitter) added to each interval
	// so checks from many nodes do not align; default a tenth of Interval.
	Jitter units.Duration `yaml:"jitter"`
	// Timeout of one check; default 2s.
	Timeout units.Duration `yaml:"timeout"`
	// Rise is how many consecutive successes make a backend healthy; default 2.
	Rise int `yaml:"rise"`
	// Fall is how many consecutive failures make it unhealthy; default 3.
	Fall int `yaml:"fall"`
	// Host overrides the Host header of checks; default the backend's host.
	Host string `yaml:"host"`
	// SlowStart is the window over which a newly healthy backend ramps up
	// from 5% to its full weight; default 0s (off).
	SlowStart units.Duration `yaml:"slow_start"`
}

// OutlierConfig configures passive health: ejecting a backend whose requests
// fail in a row.
type OutlierConfig struct {
	// Disabled turns passive ejection off.
	Disabled bool `yaml:"disabled"`
	// ConsecutiveFailures (connect errors, timeouts, 5xx) that eject a
	// backend; default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// BaseEjectionTime is the first ejection's length; it doubles on each
	// repeat; default 30s.
	BaseEjectionTime units.Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps the doubling, and a backend that stays
	// un-ejected this long starts again from BaseEjectionTime; default 5m.
	MaxEjectionTime units.Duration `yaml:"max_ejection_time"`
	// MaxEjectedPercent of the pool may be ejected at once (at least one
	// backend of two or more); default 50. Below 100 the last backend
	// taking traffic is never ejected, whatever took the others out.
	MaxEjectedPercent int `yaml:"max_ejected_percent"`
}

// RetryConfig configures retries on another backend.
type RetryConfig struct {
	// MaxTries counts the first try; 1 disables retries; default 3, at most 10.
	MaxTries int `yaml:"max_tries"`
	// Backoff before the first retry, doubled per retry with full jitter;
	// default 2ms.
	Backoff units.Duration `yaml:"backoff"`
	// MaxBackoff caps the backoff; default 100ms.
	MaxBackoff units.Duration `yaml:"max_backoff"`
	// BudgetRatio caps retries at this share of requests (0.2 = at most 20%
	// extra load); default 0.2.
	BudgetRatio float64 `yaml:"budget_ratio"`
	// MinRetriesPerSecond are allowed regardless of BudgetRatio, so a quiet
	// pool can still retry; default 10.
	MinRetriesPerSecond int `yaml:"min_retries_per_second"`
}

// TimeoutConfig bounds the time to a response.
type TimeoutConfig struct {
	// Connect bounds dialing (and TLS) to a backend; default 5s.
	Connect units.Duration `yaml:"connect"`
	// Try bounds one try, from the request written to the response headers;
	// default 30s.
	Try units.Duration `yaml:"try"`
	// Total bounds all tries and backoff, up to the response headers; the
	// body then streams without this limit; default 60s. (The first try is
	// already bounded by connect + try when that is shorter, so the timer is
	// only armed for retries.)
	Total units.Duration `yaml:"total"`
}

// TransportConfig configures the connection pool to each backend.
type TransportConfig struct {
	// MaxIdlePerBackend keep-alive connections kept per backend; default 128.
	MaxIdlePerBackend int `yaml:"max_idle_per_backend"`
	// MaxConnsPerBackend limits connections per backend; default 0 (no limit).
	MaxConnsPerBackend int `yaml:"max_conns_per_backend"`
	// IdleTimeout closes keep-alive connections idle this long; default 90s.
	IdleTimeout units.Duration `yaml:"idle_timeout"`
	// HTTP2 negotiates HTTP/2 with https backends; default false (HTTP/1.1).
	HTTP2 bool `yaml:"http2"`
	// TLSServerName overrides the SNI and verified name for https backends.
	TLSServerName string `yaml:"tls_server_name"`
	// InsecureSkipVerify disables certificate verification of https
	// backends. Only for testing.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// StickyConfig pins a client to a backend with a signed cookie.
type StickyConfig struct {
	// Enabled turns sticky sessions on.
	Enabled bool `yaml:"enabled"`
	// Cookie name; default "outpost_lb".
	Cookie string `yaml:"cookie"`
	// Lifetime of the cookie (Max-Age), re-issued once past half of it so
	// an active client keeps its pin; default 0s, a session cookie.
	Lifetime units.Duration `yaml:"lifetime"`
	// Secret keys the cookie's HMAC-SHA256 signature; at least 16 bytes.
	// Default: random per process, so set it when several nodes serve the
	// same clients.
	Secret string `yaml:"secret"`
}

// Policy names.
const (
	PolicyRoundRobin       = "round_robin"
	PolicyLeastConnections = "least_connections"
	PolicyIPHash           = "ip_hash"
	PolicyConsistentHash   = "consistent_hash"
	PolicyP2C              = "p2c"
)

// maxTriesLimit bounds RetryConfig.MaxTries; Selection keeps the tried
// backends in a fixed array of this size.
const maxTriesLimit = 10

// SetDefaults fills zero values with defaults.
func (c *PoolConfig) SetDefaults() {
	if c.Policy == "" {
		c.Policy = PolicyRoundRobin
	}
	if c.Policy == PolicyConsistentHash && c.HashKey == "" {
		c.HashKey = "uri"
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Weight == 0 {
			b.Weight = 1
		}
		if b.ID == "" {
			if u, err := url.Parse(b.URL); err == nil {
				b.ID = u.Host
			}
		}
	}
	h := &c.Health
	if h.ExpectStatus == "" {
		h.ExpectStatus = "200-399"
	}
	setDur(&h.Interval, 5*time.Second)
	if h.Jitter == 0 {
		h.Jitter = h.Interval / 10
	}
	setDur(&h.Timeout, 2*time.Second)
	setInt(&h.Rise, 2)
	setInt(&h.Fall, 3)
	o := &c.Outlier
	setInt(&o.ConsecutiveFailures, 5)
	setDur(&o.BaseEjectionTime, 30*time.Second)
	setDur(&o.MaxEjectionTime, 5*time.Minute)
	setInt(&o.MaxEjectedPercent, 50)
	r := &c.Retries
	setInt(&r.MaxTries, 3)
	setDur(&r.Backoff, 2*time.Millisecond)
	setDur(&r.MaxBackoff, 100*time.Millisecond)
	if r.BudgetRatio == 0 {
		r.BudgetRatio = 0.2
	}
	setInt(&r.MinRetriesPerSecond, 10)
	t := &c.Timeouts
	setDur(&t.Connect, 5*time.Second)
	setDur(&t.Try, 30*time.Second)
	setDur(&t.Total, 60*time.Second)
	tr := &c.Transport
	setInt(&tr.MaxIdlePerBackend, 128)
	setDur(&tr.IdleTimeout, 90*time.Second)
	s := &c.Sticky
	if s.Cookie == "" {
		s.Cookie = "outpost_lb"
	}
}

func setDur(d *units.Duration, v time.Duration) {
	if *d == 0 {
		*d = units.Duration(v)
	}
}

func setInt(n *int, v int) {
	if *n == 0 {
		*n = v
	}
}

var (
	idRE     = regexp.MustCompile(`^[A-Za-z0-9._:\[\]-]{1,128}$`) // [] for IPv6 host:port
	cookieRE = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}$`)
)

// Validate checks the config after SetDefaults. Paths are relative to the
// pool ("backends[2].weight").
func (c *PoolConfig) Validate() error {
	var l configerr.List
	if len(c.Backends) == 0 {
		l.Addf("backends", "at least one backend is required")
	}
	seen := make(map[string]int, len(c.Backends))
	for i, b := range c.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		_, urlErr := parseBackendURL(b.URL)
		if urlErr != nil {
			l.Addf(p+".url", "%v", urlErr)
		}
		if b.Weight < 1 || b.Weight > 1000 {
			l.Addf(p+".weight", "must be between 1 and 1000, got %d", b.Weight)
		}
		// An empty id is derived from the URL: when that is what is
		// wrong, the url error says so.
		if !idRE.MatchString(b.ID) && (b.ID != "" || urlErr == nil) {
			l.Addf(p+".id", "must be 1-128 letters, digits or \".-_:[]\", got %q", b.ID)
		} else if j, dup := seen[b.ID]; dup {
			l.Addf(p+".id", "duplicate backend id %q (also backends[%d])", b.ID, j)
		} else {
			seen[b.ID] = i
		}
	}
	if findPolicy(c.Policy) == nil {
		l.Addf("policy", "unknown policy %q (want %s)", c.Policy, strings.Join(policyNames(), ", "))
	}
	if c.Policy == PolicyConsistentHash {
		if _, err := parseHashKey(c.HashKey); err != nil {
			l.Addf("hash_key", "%v", err)
		}
	} else if c.HashKey != "" {
		l.Addf("hash_key", "only used by policy consistent_hash, not %q", c.Policy)
	}
	c.Health.validate(&l)
	o := c.Outlier
	if o.ConsecutiveFailures < 1 {
		l.Addf("outlier.consecutive_failures", "must be >= 1, got %d", o.ConsecutiveFailures)
	}
	positive(&l, "outlier.base_ejection_time", o.BaseEjectionTime)
	if o.MaxEjectionTime < o.BaseEjectionTime {
		l.Addf("outlier.max_ejection_time", "must be >= base_ejection_time (%s), got %s", o.BaseEjectionTime, o.MaxEjectionTime)
	}
	if o.MaxEjectedPercent < 1 || o.MaxEjectedPercent > 100 {
		l.Addf("outlier.max_ejected_percent", "must be between 1 and 100, got %d", o.MaxEjectedPercent)
	}
	r := c.Retries
	if r.MaxTries < 1 || r.MaxTries > maxTriesLimit {
		l.Addf("retries.max_tries", "must be between 1 and %d, got %d", maxTriesLimit, r.MaxTries)
	}
	nonNegative(&l, "retries.backoff", r.Backoff)
	if r.MaxBackoff < r.Backoff {
		l.Addf("retries.max_backoff", "must be >= backoff (%s), got %s", r.Backoff, r.MaxBackoff)
	}
	if r.BudgetRatio <= 0 || r.BudgetRatio > 10 {
		l.Addf("retries.budget_ratio", "must be in (0, 10], got %g", r.BudgetRatio)
	}
	if r.MinRetriesPerSecond < 0 {
		l.Addf("retries.min_retries_per_second", "must be >= 0, got %d", r.MinRetriesPerSecond)
	}
	positive(&l, "timeouts.connect", c.Timeouts.Connect)
	positive(&l, "timeouts.try", c.Timeouts.Try)
	positive(&l, "timeouts.total", c.Timeouts.Total)
	t := c.Transport
	if t.MaxIdlePerBackend < 0 {
		l.Addf("transport.max_idle_per_backend", "must be >= 0, got %d", t.MaxIdlePerBackend)
	}
	if t.MaxConnsPerBackend < 0 {
		l.Addf("transport.max_conns_per_backend", "must be >= 0, got %d", t.MaxConnsPerBackend)
	}
	positive(&l, "transport.idle_timeout", t.IdleTimeout)
	s := c.Sticky
	if !cookieRE.MatchString(s.Cookie) {
		l.Addf("sticky.cookie", "must be a valid cookie name, got %q", s.Cookie)
	}
	nonNegative(&l, "sticky.lifetime", s.Lifetime)
	if s.Secret != "" && len(s.Secret) < 16 {
		// Never echo the secret itself.
		l.Addf("sticky.secret", "must be at least 16 bytes, got %d", len(s.Secret))
	}
	return l.Err()
}

// CheckConfig reports what New or Update would reject in cfg, with paths
// relative to the pool as Validate gives them. Unlike SetDefaults and then
// Validate, it leaves the caller's cfg as it was, so a whole config can be
// checked before any of it is applied.
func CheckConfig(cfg PoolConfig) error {
	// SetDefaults fills backends in place, and the slice is the caller's.
	cfg.Backends = slices.Clone(cfg.Backends)
	cfg.SetDefaults()
	return cfg.Validate()
}

func (h *HealthConfig) validate(l *configerr.List) {
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		l.Addf("health.path", "must start with \"/\", got %q", h.Path)
	}
	if _, _, err := parseStatusRange(h.ExpectStatus); err != nil {
		l.Addf("health.expect_status", "%v", err)
	}
	positive(l, "health.interval", h.Interval)
	nonNegative(l, "health.jitter", h.Jitter)
	positive(l, "health.timeout", h.Timeout)
	if h.Rise < 1 {
		l.Addf("health.rise", "must be >= 1, got %d", h.Rise)
	}
	if h.Fall < 1 {
		l.Addf("health.fall", "must be >= 1, got %d", h.Fall)
	}
	nonNegative(l, "health.slow_start", h.SlowStart)
}

func positive(l *configerr.List, path string, d units.Duration) {
	if d <= 0 {
		l.Addf(path, "must be > 0, got %s", d)
	}
}

func nonNegative(l *configerr.List, path string, d units.Duration) {
	if d < 0 {
		l.Addf(path, "must be >= 0, got %s", d)
	}
}

// parseBackendURL accepts http(s)://host:port[/prefix] without query,
// fragment or user info.
func parseBackendURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("want an http:// or https:// URL, got %q", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("missing host in %q", s)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("invalid port in %q", s)
		}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("must not carry user info, query or fragment: %q", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	return u, nil
}

// parseStatusRange parses "200-399" or "204".
func parseStatusRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("want a status or range such as \"200-399\", got %q", s)
	}
	return lo, hi, nil
}

// hashKey says what consistent_hash hashes.
type hashKey struct {
	kind byte   // 'u' uri, 'h' header, 'c' cookie
	name string // canonical header name or cookie name
}

func parseHashKey(s string) (hashKey, error) {
	if s == "uri" {
		return hashKey{kind: 'u'}, nil
	}
	kind, name, _ := strings.Cut(s, ":")
	switch {
	case kind == "header" && name != "" && validHeaderName(name):
		return hashKey{kind: 'h', name: http.CanonicalHeaderKey(name)}, nil
	case kind == "cookie" && cookieRE.MatchString(name):
		return hashKey{kind: 'c', name: name}, nil
	}
	return hashKey{}, fmt.Errorf("want \"uri\", \"header:NAME\" or \"cookie:NAME\", got %q", s)
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
