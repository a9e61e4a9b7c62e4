package tlsedge

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
)

// Modes of certificate issuance.
const (
	// ModeACME obtains certificates from an ACME CA (Let's Encrypt by default).
	ModeACME = "acme"
	// ModeInternal issues certificates from a local CA kept under the data
	// directory; for development and the demo.
	ModeInternal = "internal"
)

// ACME challenge types (the names used in the ACME protocol).
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
	ChallengeDNS01     = "dns-01"
)

// LetsEncryptDirectory is the default ACME directory URL.
const LetsEncryptDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// Config is the TLS section of the node config (YAML section `tls:`).
type Config struct {
	// Enabled turns HTTPS on. Default false.
	Enabled bool `yaml:"enabled"`
	// Mode is how certificates are issued: "acme" (default) or "internal".
	Mode string `yaml:"mode"`
	// Listen is the HTTPS (TCP) address; HTTP/3 listens on the same UDP
	// address. Default ":443".
	Listen string `yaml:"listen"`
	// HTTPListen is the plain-HTTP address that answers ACME HTTP-01
	// challenges and redirects everything else to HTTPS. Default ":80".
	HTTPListen string `yaml:"http_listen"`
	// HTTP3 serves HTTP/3 over QUIC on Listen's UDP port and advertises it
	// with Alt-Svc. Default true.
	HTTP3 *bool `yaml:"http3"`
	// AltSvcMaxAge is the ma= of the Alt-Svc header. Default 24h.
	AltSvcMaxAge units.Duration `yaml:"alt_svc_max_age"`
	// Names are the certificate subjects managed at start, e.g.
	// "example.com", "*.example.com". Wildcards need the dns-01 challenge
	// (ACME mode).
	Names []string `yaml:"names"`
	// DefaultSNI is the name whose certificate answers handshakes without
	// SNI, or with a name no certificate covers (clients connecting by IP
	// address). Default: the first non-wildcard name in Names.
	DefaultSNI string `yaml:"default_sni"`
	// ACME configures the ACME issuer (mode acme).
	ACME ACMEConfig `yaml:"acme"`
	// OnDemand obtains certificates at the first handshake for names that
	// are not in Names, if the allowlist or the ask endpoint agrees.
	OnDemand OnDemandConfig `yaml:"on_demand"`
	// Storage is the certificate storage directory. Default
	// "<data_dir>/tls".
	Storage string `yaml:"storage"`
	// Redis keeps certificates, the ACME account and challenge state in
	// the top-level redis server instead of Storage: the storage a
	// cluster shares, so one node orders each certificate and every node
	// serves it. Mode acme only.
	Redis RedisStorageConfig `yaml:"redis"`
	// HSTS is the default Strict-Transport-Security policy for HTTPS
	// responses; off unless enabled (routes may opt in with their own).
	HSTS HSTSConfig `yaml:"hsts"`
	// Internal configures the internal CA (mode internal).
	Internal InternalConfig `yaml:"internal"`
	// RenewalWindowRatio is the share of a certificate's lifetime, counted
	// back from its expiry, in which it is renewed. Default 0 (certmagic's
	// default, 1/3).
	RenewalWindowRatio float64 `yaml:"renewal_window_ratio"`
	// RenewCheckInterval is how often certificates are checked for
	// renewal. Default 10m.
	RenewCheckInterval units.Duration `yaml:"renew_check_interval"`
}

// ACMEConfig configures the ACME issuer.
type ACMEConfig struct {
	// Directory is the ACME directory URL. Default Let's Encrypt production.
	Directory string `yaml:"directory"`
	// Email is the ACME account contact; optional but recommended.
	Email string `yaml:"email"`
	// EAB is the External Account Binding some CAs require; optional.
	EAB *EABConfig `yaml:"eab"`
	// CARoot is a PEM file with the root(s) to trust for the ACME server's
	// own HTTPS endpoint (private or test CAs). Default: system roots.
	CARoot string `yaml:"ca_root"`
	// Challenges are the enabled challenge types. Default all three:
	// http-01, tls-alpn-01, dns-01. dns-01 is used for wildcard names, or
	// for every name when it is the only one enabled.
	Challenges []string `yaml:"challenges"`
	// DNS01 tunes the dns-01 challenge answered by Outpost's own DNS.
	DNS01 DNS01Config `yaml:"dns01"`
	// Timeout bounds one certificate order. Default 90s.
	Timeout units.Duration `yaml:"timeout"`
}

// EABConfig is an ACME External Account Binding.
type EABConfig struct {
	// KeyID is the key identifier given by the CA.
	KeyID string `yaml:"key_id"`
	// MACKey is the base64url HMAC key given by the CA. Secret: never logged.
	MACKey string `yaml:"mac_key"`
}

// DNS01Config tunes the dns-01 challenge.
type DNS01Config struct {
	// Resolvers are the DNS servers (host:port) asked for the zone's SOA
	// and, unless PropagationTimeout is negative, polled until the TXT
	// record is visible. Point them at this node's own DNS listener.
	// Default ["127.0.0.1:53"].
	Resolvers []string `yaml:"resolvers"`
	// PropagationTimeout bounds the wait for the record to be visible; a
	// negative value ("-1s") skips the check. Default 2m.
	PropagationTimeout units.Duration `yaml:"propagation_timeout"`
	// TTL of the challenge TXT record. Default 60s.
	TTL units.Duration `yaml:"ttl"`
}

// OnDemandConfig guards on-demand issuance: a name is allowed only if it
// matches Allow or the Ask endpoint answers 200. With neither set, nothing
// is issued on demand.
type OnDemandConfig struct {
	// Enabled turns on-demand issuance on. Default false.
	Enabled bool `yaml:"enabled"`
	// Allow lists names or patterns ("*.example.com" matches one label).
	Allow []string `yaml:"allow"`
	// Ask is a URL queried as GET <ask>?domain=<name>; 200 allows the name.
	Ask string `yaml:"ask"`
	// AskTimeout bounds one ask request. Default 5s.
	AskTimeout units.Duration `yaml:"ask_timeout"`
}

// StorageDir is the certificate storage directory: Storage, or
// "<dataDir>/tls". With Redis storage it holds the node's copy.
func (c *Config) StorageDir(dataDir string) string {
	if c.Storage != "" {
		return c.Storage
	}
	return filepath.Join(dataDir, "tls")
}

// RedisStorageConfig puts the certificate storage in Redis (see
// RedisStorage); the node keeps a copy under StorageDir (see Mirrored).
type RedisStorageConfig struct {
	// Enabled turns it on. Default false.
	Enabled bool `yaml:"enabled"`
	// KeyPrefix namespaces its keys; nodes with the same prefix share
	// certificates. Default "{outpost-tls}:".
	KeyPrefix string `yaml:"key_prefix"`
	// LockTTL is how long the lock of a node that died while ordering
	// holds the others off. Default 30s.
	LockTTL units.Duration `yaml:"lock_ttl"`
}

// HSTSConfig is a Strict-Transport-Security policy. Routes may embed their
// own copy to opt in per route.
type HSTSConfig struct {
	// Enabled sends the header on HTTPS responses. Default false.
	Enabled bool `yaml:"enabled"`
	// MaxAge is max-age. Default 8760h (365 days).
	MaxAge units.Duration `yaml:"max_age"`
	// IncludeSubdomains adds includeSubDomains. Default false.
	IncludeSubdomains bool `yaml:"include_subdomains"`
	// Preload adds preload (requires max-age >= 1 year and
	// includeSubDomains). Default false.
	Preload bool `yaml:"preload"`
}

// InternalConfig configures the internal CA.
type InternalConfig struct {
	// RootExport is a file the root certificate (PEM) is copied to, for
	// `curl --cacert`. Default "<storage>/internal-ca/root.pem" (the stored
	// root itself).
	RootExport string `yaml:"root_export"`
	// LeafLifetime is the validity of issued certificates. Default 168h.
	LeafLifetime units.Duration `yaml:"leaf_lifetime"`
	// RootLifetime is the validity of a newly generated root. Default 87600h.
	RootLifetime units.Duration `yaml:"root_lifetime"`
}

// SetDefaults fills zero values with defaults.
func (c *Config) SetDefaults() {
	if c.Mode == "" {
		c.Mode = ModeACME
	}
	if c.Listen == "" {
		c.Listen = ":443"
	}
	if c.HTTPListen == "" {
		c.HTTPListen = ":80"
	}
	if c.HTTP3 == nil {
		t := true
		c.HTTP3 = &t
	}
	if c.DefaultSNI == "" {
		for _, n := range c.Names {
			if !strings.HasPrefix(n, "*.") {
				c.DefaultSNI = n
				break
			}
		}
	}
	if c.AltSvcMaxAge == 0 {
		c.AltSvcMaxAge = units.Duration(24 * time.Hour)
	}
	if c.RenewCheckInterval == 0 {
		c.RenewCheckInterval = units.Duration(10 * time.Minute)
	}
	c.ACME.setDefaults()
	c.HSTS.SetDefaults()
	if c.OnDemand.AskTimeout == 0 {
		c.OnDemand.AskTimeout = units.Duration(5 * time.Second)
	}
	if c.Internal.LeafLifetime == 0 {
		c.Internal.LeafLifetime = units.Duration(7 * 24 * time.Hour)
	}
	if c.Internal.RootLifetime == 0 {
		c.Internal.RootLifetime = units.Duration(10 * 365 * 24 * time.Hour)
	}
}

func (a *ACMEConfig) setDefaults() {
	if a.Directory == "" {
		a.Directory = LetsEncryptDirectory
	}
	if len(a.Challenges) == 0 {
		a.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01, ChallengeDNS01}
	}
	if len(a.DNS01.Resolvers) == 0 {
		a.DNS01.Resolvers = []string{"127.0.0.1:53"}
	}
	if a.DNS01.PropagationTimeout == 0 {
		a.DNS01.PropagationTimeout = units.Duration(2 * time.Minute)
	}
	if a.DNS01.TTL == 0 {
		a.DNS01.TTL = units.Duration(time.Minute)
	}
	if a.Timeout == 0 {
		a.Timeout = units.Duration(90 * time.Second)
	}
}

// SetDefaults fills zero values of an HSTS policy.
func (h *HSTSConfig) SetDefaults() {
	if h.MaxAge == 0 {
		h.MaxAge = units.Duration(365 * 24 * time.Hour)
	}
}

// Validate checks the section; paths are relative to `tls`.
func (c *Config) Validate() error {
	var l configerr.List
	if !c.Enabled {
		return nil
	}
	switch c.Mode {
	case ModeACME, ModeInternal:
	default:
		l.Addf("mode", "unknown mode %q (want acme, internal)", c.Mode)
	}
	if !units.ValidHostPort(c.Listen) {
		l.Addf("listen", "want host:port, got %q", c.Listen)
	}
	if c.HTTPListen != "off" && !units.ValidHostPort(c.HTTPListen) {
		l.Addf("http_listen", "want host:port or off, got %q", c.HTTPListen)
	}
	if c.AltSvcMaxAge < 0 {
		l.Addf("alt_svc_max_age", "must not be negative, got %s", c.AltSvcMaxAge)
	}
	if c.RenewalWindowRatio < 0 || c.RenewalWindowRatio >= 1 {
		l.Addf("renewal_window_ratio", "must be within [0, 1), got %g", c.RenewalWindowRatio)
	}
	if c.RenewCheckInterval < units.Duration(time.Second) {
		l.Addf("renew_check_interval", "must be at least 1s, got %s", c.RenewCheckInterval)
	}
	wildcard := false
	for i, n := range c.Names {
		if err := validName(n); err != nil {
			l.Addf(fmt.Sprintf("names[%d]", i), "%v", err)
		}
		if strings.HasPrefix(n, "*.") {
			wildcard = true
		}
	}
	if c.DefaultSNI != "" {
		if err := validName(c.DefaultSNI); err != nil || strings.HasPrefix(c.DefaultSNI, "*.") {
			l.Addf("default_sni", "want a DNS name, got %q", c.DefaultSNI)
		}
	}
	if len(c.Names) == 0 && !c.OnDemand.Enabled {
		l.Addf("names", "list at least one name, or enable on_demand")
	}
	if c.Mode == ModeACME {
		l.Merge("acme", c.ACME.validate(wildcard))
	}
	l.Merge("on_demand", c.OnDemand.validate())
	l.Merge("hsts", c.HSTS.Validate())
	if c.Redis.Enabled && c.Mode != ModeACME {
		// The internal CA lives on each node's disk: a leaf another
		// node's CA signed would not chain to this node's root.
		l.Addf("redis.enabled", "shared storage is for mode acme, not %q", c.Mode)
	}
	if c.Redis.LockTTL != 0 && c.Redis.LockTTL < units.Duration(time.Second) {
		l.Addf("redis.lock_ttl", "must be at least 1s, got %s", c.Redis.LockTTL)
	}
	if c.Internal.LeafLifetime < units.Duration(time.Minute) {
		l.Addf("internal.leaf_lifetime", "must be at least 1m, got %s", c.Internal.LeafLifetime)
	}
	if c.Internal.RootLifetime < c.Internal.LeafLifetime {
		l.Addf("internal.root_lifetime", "must be at least leaf_lifetime (%s), got %s", c.Internal.LeafLifetime, c.Internal.RootLifetime)
	}
	return l.Err()
}

func (a *ACMEConfig) validate(wildcard bool) error {
	var l configerr.List
	if u, err := url.Parse(a.Directory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		l.Addf("directory", "want an http(s) URL, got %q", a.Directory)
	}
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		l.Addf("email", "want an email address, got %q", a.Email)
	}
	if a.EAB != nil {
		if a.EAB.KeyID == "" {
			l.Addf("eab.key_id", "required when eab is set")
		}
		if a.EAB.MACKey == "" {
			l.Addf("eab.mac_key", "required when eab is set")
		}
	}
	seen := map[string]bool{}
	for i, ch := range a.Challenges {
		switch ch {
		case ChallengeHTTP01, ChallengeTLSALPN01, ChallengeDNS01:
		default:
			l.Addf(fmt.Sprintf("challenges[%d]", i), "unknown challenge %q (want http-01, tls-alpn-01, dns-01)", ch)
		}
		if seen[ch] {
			l.Addf(fmt.Sprintf("challenges[%d]", i), "%q listed twice", ch)
		}
		seen[ch] = true
	}
	if wildcard && !seen[ChallengeDNS01] {
		l.Addf("challenges", "wildcard names need dns-01")
	}
	for i, r := range a.DNS01.Resolvers {
		if !units.ValidHostPort(r) {
			l.Addf(fmt.Sprintf("dns01.resolvers[%d]", i), "want host:port, got %q", r)
		}
	}
	if a.DNS01.TTL < 0 {
		l.Addf("dns01.ttl", "must not be negative, got %s", a.DNS01.TTL)
	}
	if a.Timeout < units.Duration(time.Second) {
		l.Addf("timeout", "must be at least 1s, got %s", a.Timeout)
	}
	return l.Err()
}

func (o *OnDemandConfig) validate() error {
	var l configerr.List
	if !o.Enabled {
		return nil
	}
	if len(o.Allow) == 0 && o.Ask == "" {
		l.Addf("", "on-demand TLS needs allow or ask, or anyone could make this node request certificates")
	}
	for i, n := range o.Allow {
		if err := validName(n); err != nil {
			l.Addf(fmt.Sprintf("allow[%d]", i), "%v", err)
		}
	}
	if o.Ask != "" {
		if u, err := url.Parse(o.Ask); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			l.Addf("ask", "want an http(s) URL, got %q", o.Ask)
		}
	}
	if o.AskTimeout <= 0 {
		l.Addf("ask_timeout", "must be positive, got %s", o.AskTimeout)
	}
	return l.Err()
}

// Validate checks an HSTS policy.
func (h *HSTSConfig) Validate() error {
	var l configerr.List
	if h.MaxAge < 0 {
		l.Addf("max_age", "must not be negative, got %s", h.MaxAge)
	}
	if h.Preload && (!h.IncludeSubdomains || h.MaxAge < units.Duration(365*24*time.Hour)) {
		l.Addf("preload", "needs include_subdomains and max_age >= 8760h")
	}
	return l.Err()
}

// HeaderValue renders the Strict-Transport-Security value.
func (h *HSTSConfig) HeaderValue() string {
	v := "max-age=" + strconv.FormatInt(int64(h.MaxAge.D()/time.Second), 10)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// validName checks a certificate subject or allow pattern.
func validName(n string) error {
	if n == "" {
		return fmt.Errorf("empty name")
	}
	if n != strings.ToLower(n) {
		return fmt.Errorf("want lower case, got %q", n)
	}
	rest := strings.TrimPrefix(n, "*.")
	if strings.ContainsAny(rest, "*") {
		return fmt.Errorf("a wildcard must be the whole left-most label, got %q", n)
	}
	if len(rest) > 253 || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
		return fmt.Errorf("not a valid DNS name: %q", n)
	}
	for _, label := range strings.Split(rest, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("not a valid DNS name: %q", n)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("not a valid DNS name: %q", n)
			}
		}
	}
	return nil
}

// http3On reports whether HTTP/3 is enabled.
func (c *Config) http3On() bool { return c.HTTP3 == nil || *c.HTTP3 }
