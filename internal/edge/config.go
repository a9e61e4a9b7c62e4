package edge

import (
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
)

// Config is the edge HTTP listener (YAML section `edge:`).
type Config struct {
	// Listen is the plain-HTTP address. Default ":80".
	Listen string `yaml:"listen"`
	// ReadHeaderTimeout bounds reading request headers (slowloris). Default 10s.
	ReadHeaderTimeout units.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request including its body; 0
	// (default) leaves large uploads to the idle and upstream timeouts.
	ReadTimeout units.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response; 0 (default) so large cached
	// objects can stream to slow clients.
	WriteTimeout units.Duration `yaml:"write_timeout"`
	// ClientBodyTimeout bounds each read of a request body: a client that
	// sends nothing for this long loses the connection (nginx's
	// client_body_timeout). Default 60s.
	ClientBodyTimeout units.Duration `yaml:"client_body_timeout"`
	// SendTimeout bounds each write of a response: a client that takes
	// nothing for this long loses the connection (nginx's send_timeout).
	// Default 60s.
	SendTimeout units.Duration `yaml:"send_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout units.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps request line plus headers. Default 64KiB.
	MaxHeaderBytes units.Size `yaml:"max_header_bytes"`
	// MaxConnections caps the client connections open at once across the
	// edge, HTTPS and port-80 listeners (HAProxy's maxconn); at the cap
	// they stop accepting. Default 0: half the process's open-file limit.
	MaxConnections int `yaml:"max_connections"`
	// ShutdownTimeout is how long in-flight requests may run after SIGTERM. Default 30s.
	ShutdownTimeout units.Duration `yaml:"shutdown_timeout"`
	// ShutdownDelay is how long the node keeps serving after SIGTERM while
	// its health endpoints already answer 503, so peers' DNS and load
	// balancers in front stop sending it clients before its listeners
	// close (HAProxy's grace). Default 0: close at once.
	ShutdownDelay units.Duration `yaml:"shutdown_delay"`
	// TrustedProxies lists peers (CIDRs) whose X-Forwarded-For,
	// X-Forwarded-Proto, X-Forwarded-Host and X-Request-ID are believed.
	// Default: none — client-sent forwarding headers are replaced.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
	// Via is the pseudonym in the Via header. Default: the node name.
	Via string `yaml:"via"`
	// AccessLog turns the per-request JSON log on. Default true.
	AccessLog *bool `yaml:"access_log"`
	// FastHTTP1 serves HTTP/1.1 requests (plain and HTTPS) with
	// Outpost's own HTTP/1.1 server (internal/http1), which hands
	// anything unusual, and HTTP/2, to net/http. false: net/http serves
	// everything. Default true.
	FastHTTP1 *bool `yaml:"fast_http1"`
	// FastHTTP2 serves HTTPS connections that negotiate HTTP/2 with
	// Outpost's own HTTP/2 server (internal/http2). false: net/http's.
	// Default true.
	FastHTTP2 *bool `yaml:"fast_http2"`
	// Sendfile sends file bodies (cache hits) on plain-HTTP connections
	// with sendfile(2), the kernel copying from the page cache to the
	// socket. false copies them through a buffer instead (nginx's
	// `sendfile off`; see CopyBodies). Default true.
	Sendfile *bool `yaml:"sendfile"`
	// NotsentLowat bounds the bytes a client connection keeps queued in
	// the kernel beyond what TCP has sent (TCP_NOTSENT_LOWAT, Linux):
	// large bodies are written as the connection drains instead of
	// filling its send buffer. "0" leaves the kernel's setting
	// (net.ipv4.tcp_notsent_lowat). Default DefaultNotsentLowat.
	NotsentLowat *units.Size `yaml:"notsent_lowat"`
}

// DefaultNotsentLowat is edge.notsent_lowat's default (see NotsentLowat).
const DefaultNotsentLowat = 16 << 10

// maxNotsentLowat bounds edge.notsent_lowat: the kernel takes an int.
const maxNotsentLowat = 1 << 30

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":80"
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = units.Duration(10e9)
	}
	if c.ClientBodyTimeout == 0 {
		c.ClientBodyTimeout = units.Duration(60e9)
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = units.Duration(60e9)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = units.Duration(120e9)
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = units.Duration(30e9)
	}
	if c.FastHTTP1 == nil {
		t := true
		c.FastHTTP1 = &t
	}
	if c.FastHTTP2 == nil {
		t := true
		c.FastHTTP2 = &t
	}
	if c.AccessLog == nil {
		t := true
		c.AccessLog = &t
	}
	if c.Sendfile == nil {
		t := true
		c.Sendfile = &t
	}
	if c.NotsentLowat == nil {
		v := units.Size(DefaultNotsentLowat)
		c.NotsentLowat = &v
	}
}

// Validate checks the section.
func (c *Config) Validate() error {
	var l configerr.List
	if !units.ValidHostPort(c.Listen) {
		l.Addf("listen", "want host:port, got %q", c.Listen)
	}
	if c.MaxConnections < 0 {
		l.Addf("max_connections", "must not be negative, got %d", c.MaxConnections)
	}
	if c.MaxHeaderBytes < 1024 {
		l.Addf("max_header_bytes", "must be at least 1KiB, got %d", c.MaxHeaderBytes)
	}
	for name, d := range map[string]units.Duration{"read_header_timeout": c.ReadHeaderTimeout, "read_timeout": c.ReadTimeout,
		"write_timeout": c.WriteTimeout, "client_body_timeout": c.ClientBodyTimeout, "send_timeout": c.SendTimeout, "idle_timeout": c.IdleTimeout, "shutdown_timeout": c.ShutdownTimeout,
		"shutdown_delay": c.ShutdownDelay} {
		if d < 0 {
			l.Addf(name, "must not be negative, got %s", d)
		}
	}
	if c.NotsentLowat != nil && (*c.NotsentLowat < 0 || *c.NotsentLowat > maxNotsentLowat) {
		l.Addf("notsent_lowat", "want 0 (the kernel's setting) up to 1GiB, got %d", int64(*c.NotsentLowat))
	}
	if c.ShutdownDelay > units.Duration(10*time.Minute) {
		l.Addf("shutdown_delay", "at most 10m, got %s", c.ShutdownDelay)
	}
	return l.Err()
}

// ConnLimit is the connection limit the listeners share: MaxConnections,
// or half the open-file limit when that is 0.
func (c *Config) ConnLimit() *ConnLimit {
	if c.MaxConnections > 0 {
		return NewConnLimit(c.MaxConnections)
	}
	return NewConnLimit(autoMaxConns())
}

// Route maps a host and path prefix to a handler chain (YAML `routes:` items).
// The cache and gateway blocks belong to those packages and are held here
// as decoded values; the node wiring passes them on.
type Route struct {
	// Name identifies the route in logs and metrics. Required, unique.
	Name string `yaml:"name"`
	// Hosts the route answers for: exact names or "*.example.com"
	// wildcards. Empty means any host.
	Hosts []string `yaml:"hosts"`
	// PathPrefix the path must start with. Default "/". The longest
	// matching prefix wins.
	PathPrefix string `yaml:"path_prefix"`
	// Upstream is one origin URL to proxy to (when no pool is named).
	Upstream string `yaml:"upstream"`
	// Pool names a load-balancer pool from `pools:`.
	Pool string `yaml:"pool"`
	// Timeout bounds the wait for the upstream's response headers. Default 30s.
	Timeout units.Duration `yaml:"timeout"`
	// BodyTimeout bounds each read of the upstream's response body: an
	// upstream silent this long mid-body is cut off (nginx's
	// proxy_read_timeout). Default 60s.
	BodyTimeout units.Duration `yaml:"body_timeout"`
}

// SetDefaults fills unset fields.
func (r *Route) SetDefaults() {
	if r.PathPrefix == "" {
		r.PathPrefix = "/"
	}
	if r.Timeout == 0 {
		r.Timeout = units.Duration(30e9)
	}
	if r.BodyTimeout == 0 {
		r.BodyTimeout = units.Duration(60e9)
	}
	for i, h := range r.Hosts {
		r.Hosts[i] = strings.ToLower(strings.TrimSuffix(h, "."))
	}
}

// Validate checks one route; pools lists the configured pool names.
func (r *Route) Validate(pools map[string]bool) error {
	var l configerr.List
	if r.Name == "" {
		l.Addf("name", "required")
	}
	if !strings.HasPrefix(r.PathPrefix, "/") {
		l.Addf("path_prefix", "must start with \"/\", got %q", r.PathPrefix)
	}
	switch {
	case r.Upstream == "" && r.Pool == "":
		l.Addf("upstream", "a route needs an upstream URL or a pool")
	case r.Upstream != "" && r.Pool != "":
		l.Addf("pool", "set either upstream or pool, not both")
	case r.Upstream != "":
		u, err := url.Parse(r.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.Addf("upstream", "want an http(s) URL, got %q", r.Upstream)
		}
	case !pools[r.Pool]:
		l.Addf("pool", "unknown pool %q (want one of the names under pools:)", r.Pool)
	}
	for i, h := range r.Hosts {
		if h == "" || strings.ContainsAny(h, "/ :") || strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
			l.Addf("hosts["+itoa(i)+"]", "want a host name or \"*.domain\", got %q", h)
		}
	}
	if r.Timeout < 0 {
		l.Addf("timeout", "must not be negative")
	}
	if r.BodyTimeout < 0 {
		l.Addf("body_timeout", "must not be negative")
	}
	return l.Err()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
