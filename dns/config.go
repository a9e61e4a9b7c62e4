package dns

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
)

// Config is the `dns:` section of the node config.
type Config struct {
	// Listen lists the addresses served on both UDP and TCP. Default [":53"].
	Listen []string `yaml:"listen"`
	// EDNSSize is the UDP payload size advertised in EDNS0 and the cap on
	// UDP answers to EDNS clients, in bytes. Default 1232 (the DNS flag day
	// 2020 value, safe from IP fragmentation); 512..4096.
	EDNSSize int `yaml:"edns_size"`
	// TCPIdleTimeout closes a TCP connection after this long without a new
	// query. Default 10s.
	TCPIdleTimeout units.Duration `yaml:"tcp_idle_timeout"`
	// TCPReadTimeout bounds reading the first query of a TCP connection,
	// and writing each message (a client that stops reading, e.g. in the
	// middle of an AXFR, is dropped). Default 2s.
	TCPReadTimeout units.Duration `yaml:"tcp_read_timeout"`
	// Zones are the zones served authoritatively.
	Zones []ZoneConfig `yaml:"zones"`
	// Steered names are answered per query with the nearest healthy nodes.
	Steered []SteeredName `yaml:"steered"`
	// Geo configures client location.
	Geo GeoConfig `yaml:"geo"`
	// Health configures the probes of every edge node's health endpoint.
	Health HealthConfig `yaml:"health"`
	// RRL is response rate limiting.
	RRL RRLConfig `yaml:"rrl"`
	// Transfer configures AXFR/IXFR to secondaries and NOTIFY.
	Transfer TransferConfig `yaml:"transfer"`
}

// ZoneConfig is one served zone: a zone file, inline records, or both.
type ZoneConfig struct {
	// Origin is the zone apex, e.g. "example.com". Optional with a file:
	// taken from the file's SOA record.
	Origin string `yaml:"origin"`
	// File is an RFC 1035 zone file. $INCLUDE may only name files inside the
	// file's directory.
	File string `yaml:"file"`
	// Records are RRs in zone-file syntax, relative to Origin, e.g.
	// "www 300 IN A 192.0.2.1". Default TTL 3600 s. A zone without a SOA
	// gets one synthesized (ns1.<origin>, hostmaster.<origin>).
	Records []string `yaml:"records"`
}

// SteeredName is a name answered from the node set.
type SteeredName struct {
	// Name is a fully qualified name inside a served zone, e.g.
	// "www.example.com" or "example.com" for the apex.
	Name string `yaml:"name"`
	// Answers is the most A (or AAAA) records per answer. Default 1.
	Answers int `yaml:"answers"`
	// TTL of steered answers. Default 30s.
	TTL units.Duration `yaml:"ttl"`
}

// GeoConfig locates clients.
type GeoConfig struct {
	// Database is a MaxMind-format country database (a `country_code`
	// field, or `country.iso_code` as in GeoLite2). Default: the embedded
	// geo-whois-asn-country database.
	Database string `yaml:"database"`
	// Overrides map client networks to a node region, checked before the
	// database (longest prefix wins).
	Overrides []GeoOverride `yaml:"overrides"`
}

// GeoOverride sends clients in CIDR to the nodes of Region first.
type GeoOverride struct {
	CIDR   string `yaml:"cidr"`   // e.g. "10.0.0.0/8"
	Region string `yaml:"region"` // a node region label, e.g. "eu"
}

// HealthConfig configures edge node health probes (HTTP GET, 2xx is up).
type HealthConfig struct {
	// Interval between probes of one node. Default 5s.
	Interval units.Duration `yaml:"interval"`
	// Timeout of one probe. Default 2s; must be <= interval.
	Timeout units.Duration `yaml:"timeout"`
	// Rise is the consecutive successes that bring a node back. Default 2.
	Rise int `yaml:"rise"`
	// Fall is the consecutive failures that take a node out. Default 3.
	Fall int `yaml:"fall"`
	// Path is probed on the node's IP (port 80) when a node has no Health
	// URL. Default "/healthz".
	Path string `yaml:"path"`
	// Disabled turns probing off: every node counts as healthy.
	Disabled bool `yaml:"disabled"`
}

// RRLConfig is response rate limiting per client prefix (UDP only).
type RRLConfig struct {
	// Disabled turns RRL off.
	Disabled bool `yaml:"disabled"`
	// ResponsesPerSecond allowed per client prefix. Default 50.
	ResponsesPerSecond int `yaml:"responses_per_second"`
	// Burst is the bucket size, in responses. Default = responses_per_second.
	Burst int `yaml:"burst"`
	// Slip: every slip-th limited response is sent as an empty truncated
	// answer (so real clients retry over TCP), the others are dropped.
	// 0 drops all. Default 2 (SetDefaults: when Slip is 0 and SlipSetting
	// nil). YAML sets SlipSetting; SetDefaults copies it here.
	Slip int `yaml:"-"`
	// SlipSetting is the `slip` key as written: nil when absent, so an
	// explicit 0 (drop all) is told apart from no value (the default). From
	// Go, set Slip, or SlipSetting for an explicit 0.
	SlipSetting *int `yaml:"slip"`
	// IPv4Prefix and IPv6Prefix group clients. Defaults 24 and 56.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// Exempt networks are never limited, e.g. monitoring ("127.0.0.0/8").
	Exempt []string `yaml:"exempt"`
}

// TransferConfig allows zone transfers and sends NOTIFY.
type TransferConfig struct {
	// Keys are TSIG keys, referenced by name.
	Keys []TSIGKey `yaml:"keys"`
	// Secondaries may transfer every zone (AXFR, and IXFR answered as AXFR).
	Secondaries []Secondary `yaml:"secondaries"`
	// Notify targets get a NOTIFY for a zone whenever it changes.
	Notify []NotifyTarget `yaml:"notify"`
}

// TSIGKey is a shared secret for TSIG (RFC 8945).
type TSIGKey struct {
	Name string `yaml:"name"` // key name, e.g. "xfr-key"
	// Algorithm: hmac-sha256 (default), hmac-sha512, hmac-sha384, hmac-sha224 or hmac-sha1.
	Algorithm string `yaml:"algorithm"`
	Secret    string `yaml:"secret"` // base64; never logged
}

// Secondary is a host or network allowed to transfer zones.
type Secondary struct {
	// Address is an IP or CIDR, e.g. "192.0.2.53" or "192.0.2.0/24".
	Address string `yaml:"address"`
	// Key, when set, names a TSIG key the request must be signed with.
	Key string `yaml:"key"`
}

// NotifyTarget receives NOTIFY messages.
type NotifyTarget struct {
	Address string `yaml:"address"` // host:port, e.g. "192.0.2.53:53"
	Key     string `yaml:"key"`     // optional TSIG key name
}

// Defaults.
const (
	DefaultEDNSSize   = 1232
	DefaultSteeredTTL = 30 * time.Second
)

// SetDefaults fills zero values with defaults.
func (c *Config) SetDefaults() {
	if len(c.Listen) == 0 {
		c.Listen = []string{":53"}
	}
	if c.EDNSSize == 0 {
		c.EDNSSize = DefaultEDNSSize
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = units.Duration(10 * time.Second)
	}
	if c.TCPReadTimeout == 0 {
		c.TCPReadTimeout = units.Duration(2 * time.Second)
	}
	for i := range c.Steered {
		s := &c.Steered[i]
		if s.Answers == 0 {
			s.Answers = 1
		}
		if s.TTL == 0 {
			s.TTL = units.Duration(DefaultSteeredTTL)
		}
	}
	h := &c.Health
	if h.Interval == 0 {
		h.Interval = units.Duration(5 * time.Second)
	}
	if h.Timeout == 0 {
		h.Timeout = units.Duration(2 * time.Second)
		if h.Timeout > h.Interval {
			h.Timeout = h.Interval
		}
	}
	if h.Rise == 0 {
		h.Rise = 2
	}
	if h.Fall == 0 {
		h.Fall = 3
	}
	if h.Path == "" {
		h.Path = "/healthz"
	}
	r := &c.RRL
	if r.ResponsesPerSecond == 0 {
		r.ResponsesPerSecond = 50
	}
	if r.Burst == 0 {
		r.Burst = r.ResponsesPerSecond
	}
	if r.SlipSetting != nil {
		r.Slip = *r.SlipSetting
	} else if r.Slip == 0 {
		r.Slip = 2
	}
	if r.IPv4Prefix == 0 {
		r.IPv4Prefix = 24
	}
	if r.IPv6Prefix == 0 {
		r.IPv6Prefix = 56
	}
	for i := range c.Transfer.Keys {
		if c.Transfer.Keys[i].Algorithm == "" {
			c.Transfer.Keys[i].Algorithm = "hmac-sha256"
		}
	}
}

// tsigAlgorithm maps a config algorithm name to miekg/dns's name.
func tsigAlgorithm(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "hmac-sha1":
		return mdns.HmacSHA1, true
	case "hmac-sha224":
		return mdns.HmacSHA224, true
	case "hmac-sha256":
		return mdns.HmacSHA256, true
	case "hmac-sha384":
		return mdns.HmacSHA384, true
	case "hmac-sha512":
		return mdns.HmacSHA512, true
	}
	return "", false
}

// Validate checks the section; paths are relative to `dns`.
func (c *Config) Validate() error {
	var l configerr.List
	for i, a := range c.Listen {
		if !units.ValidHostPort(a) {
			l.Addf(fmt.Sprintf("listen[%d]", i), "want host:port, got %q", a)
		}
	}
	if c.EDNSSize < 512 || c.EDNSSize > 4096 {
		l.Addf("edns_size", "must be within [512, 4096], got %d", c.EDNSSize)
	}
	if c.TCPIdleTimeout < 0 {
		l.Addf("tcp_idle_timeout", "must be >= 0, got %s", c.TCPIdleTimeout)
	}
	if c.TCPReadTimeout < 0 {
		l.Addf("tcp_read_timeout", "must be >= 0, got %s", c.TCPReadTimeout)
	}
	origins := map[string]int{}
	for i, z := range c.Zones {
		p := fmt.Sprintf("zones[%d]", i)
		if z.File == "" && len(z.Records) == 0 {
			l.Addf(p, "a zone needs a file or records")
		}
		if z.File == "" && z.Origin == "" {
			l.Addf(p+".origin", "required when the zone has no file")
		}
		if z.Origin != "" {
			if _, ok := mdns.IsDomainName(z.Origin); !ok {
				l.Addf(p+".origin", "not a domain name: %q", z.Origin)
			} else {
				o := canonical(z.Origin)
				if j, dup := origins[o]; dup {
					l.Addf(p+".origin", "zone %s is already defined by zones[%d]", o, j)
				}
				origins[o] = i
			}
		}
		for j, r := range z.Records {
			origin := z.Origin
			if origin == "" {
				origin = "."
			}
			if _, err := parseRR(r, canonical(origin)); err != nil {
				l.Addf(fmt.Sprintf("%s.records[%d]", p, j), "%v", err)
			}
		}
	}
	seen := map[string]int{}
	for i, s := range c.Steered {
		p := fmt.Sprintf("steered[%d]", i)
		if _, ok := mdns.IsDomainName(s.Name); !ok || s.Name == "" {
			l.Addf(p+".name", "not a domain name: %q", s.Name)
		} else if j, dup := seen[canonical(s.Name)]; dup {
			l.Addf(p+".name", "%s is already steered by steered[%d]", s.Name, j)
		} else {
			seen[canonical(s.Name)] = i
		}
		if s.Answers < 1 || s.Answers > 16 {
			l.Addf(p+".answers", "must be within [1, 16], got %d", s.Answers)
		}
		if s.TTL < units.Duration(time.Second) {
			l.Addf(p+".ttl", "must be >= 1s, got %s", s.TTL)
		}
	}
	for i, o := range c.Geo.Overrides {
		p := fmt.Sprintf("geo.overrides[%d]", i)
		if _, err := netip.ParsePrefix(o.CIDR); err != nil {
			l.Addf(p+".cidr", "want a CIDR such as 10.0.0.0/8, got %q", o.CIDR)
		}
		if o.Region == "" {
			l.Addf(p+".region", "required")
		}
	}
	h := c.Health
	if h.Interval <= 0 {
		l.Addf("health.interval", "must be > 0, got %s", h.Interval)
	}
	if h.Timeout <= 0 || h.Timeout > h.Interval {
		l.Addf("health.timeout", "must be > 0 and <= interval (%s), got %s", h.Interval, h.Timeout)
	}
	if h.Rise < 1 {
		l.Addf("health.rise", "must be >= 1, got %d", h.Rise)
	}
	if h.Fall < 1 {
		l.Addf("health.fall", "must be >= 1, got %d", h.Fall)
	}
	if !strings.HasPrefix(h.Path, "/") {
		l.Addf("health.path", "must start with /, got %q", h.Path)
	}
	r := c.RRL
	if r.ResponsesPerSecond < 1 {
		l.Addf("rrl.responses_per_second", "must be >= 1, got %d", r.ResponsesPerSecond)
	}
	if r.Burst < 1 {
		l.Addf("rrl.burst", "must be >= 1, got %d", r.Burst)
	}
	if r.Slip < 0 || r.Slip > 10 {
		l.Addf("rrl.slip", "must be within [0, 10], got %d", r.Slip)
	}
	if r.IPv4Prefix < 8 || r.IPv4Prefix > 32 {
		l.Addf("rrl.ipv4_prefix", "must be within [8, 32], got %d", r.IPv4Prefix)
	}
	if r.IPv6Prefix < 16 || r.IPv6Prefix > 128 {
		l.Addf("rrl.ipv6_prefix", "must be within [16, 128], got %d", r.IPv6Prefix)
	}
	for i, e := range r.Exempt {
		if _, err := netip.ParsePrefix(e); err != nil {
			l.Addf(fmt.Sprintf("rrl.exempt[%d]", i), "want a CIDR, got %q", e)
		}
	}
	keys := map[string]bool{}
	for i, k := range c.Transfer.Keys {
		p := fmt.Sprintf("transfer.keys[%d]", i)
		if _, ok := mdns.IsDomainName(k.Name); !ok || k.Name == "" {
			l.Addf(p+".name", "not a key name: %q", k.Name)
		}
		keys[canonical(k.Name)] = true
		if _, ok := tsigAlgorithm(k.Algorithm); !ok {
			l.Addf(p+".algorithm", "unknown algorithm %q (want hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224, hmac-sha1)", k.Algorithm)
		}
		if _, err := decodeSecret(k.Secret); err != nil || k.Secret == "" {
			l.Addf(p+".secret", "want a non-empty base64 secret")
		}
	}
	for i, s := range c.Transfer.Secondaries {
		p := fmt.Sprintf("transfer.secondaries[%d]", i)
		if _, err := parsePrefixOrAddr(s.Address); err != nil {
			l.Addf(p+".address", "want an IP or CIDR, got %q", s.Address)
		}
		if s.Key != "" && !keys[canonical(s.Key)] {
			l.Addf(p+".key", "unknown key %q", s.Key)
		}
	}
	for i, n := range c.Transfer.Notify {
		p := fmt.Sprintf("transfer.notify[%d]", i)
		if _, err := netip.ParseAddrPort(n.Address); err != nil {
			l.Addf(p+".address", "want ip:port, got %q", n.Address)
		}
		if n.Key != "" && !keys[canonical(n.Key)] {
			l.Addf(p+".key", "unknown key %q", n.Key)
		}
	}
	return l.Err()
}

// parsePrefixOrAddr accepts "192.0.2.1" or "192.0.2.0/24".
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// canonical lower-cases a name and makes it fully qualified.
func canonical(s string) string {
	return strings.ToLower(mdns.Fqdn(s))
}
