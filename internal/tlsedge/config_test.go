package tlsedge

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if c.Mode != ModeACME || c.Listen != ":443" || c.HTTPListen != ":80" || !c.http3On() {
		t.Fatalf("defaults: %+v", c)
	}
	if c.ACME.Directory != LetsEncryptDirectory || len(c.ACME.Challenges) != 3 || c.ACME.DNS01.Resolvers[0] != "127.0.0.1:53" {
		t.Fatalf("acme defaults: %+v", c.ACME)
	}
	if c.HSTS.Enabled || c.HSTS.MaxAge.D() != 365*24*time.Hour {
		t.Fatalf("hsts defaults: %+v", c.HSTS)
	}
	// A disabled section is never an error.
	if err := c.Validate(); err != nil {
		t.Fatalf("disabled section: %v", err)
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
enabled: true
mode: internal
listen: 127.0.0.1:8443
http3: false
names: [demo.test, "*.demo.test"]
internal:
  root_export: /tmp/root.pem
  leaf_lifetime: 24h
hsts:
  enabled: true
  max_age: 1h
acme:
  challenges: [dns-01]
  eab: {key_id: kid, mac_key: c2VjcmV0}
  dns01: {resolvers: ["127.0.0.1:8053"], propagation_timeout: -1s}
on_demand: {enabled: true, allow: ["*.shop.test"], ask: "http://127.0.0.1:9/ask"}
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.http3On() || c.Internal.LeafLifetime.D() != 24*time.Hour || c.ACME.DNS01.PropagationTimeout.D() != -time.Second {
		t.Fatalf("decoded %+v", c)
	}
	if propagationTimeout(c.ACME.DNS01.PropagationTimeout.D()) != -1 {
		t.Fatal("negative propagation timeout must map to certmagic's -1 (skip)")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		path   string
		msg    string
	}{
		{"unknown mode", func(c *Config) { c.Mode = "self" }, "mode", `unknown mode "self" (want acme, internal)`},
		{"bad listen", func(c *Config) { c.Listen = "443" }, "listen", `want host:port, got "443"`},
		{"bad http_listen", func(c *Config) { c.HTTPListen = "x" }, "http_listen", `want host:port or off`},
		{"no names", func(c *Config) { c.Names = nil }, "names", "at least one name"},
		{"upper case name", func(c *Config) { c.Names = []string{"Demo.test"} }, "names[0]", "lower case"},
		{"inner wildcard", func(c *Config) { c.Names = []string{"a.*.test"} }, "names[0]", "left-most label"},
		{"bad label", func(c *Config) { c.Names = []string{"a..test"} }, "names[0]", "not a valid DNS name"},
		{"wildcard without dns-01", func(c *Config) {
			c.Names = []string{"*.demo.test"}
			c.ACME.Challenges = []string{ChallengeHTTP01}
		}, "acme.challenges", "wildcard names need dns-01"},
		{"unknown challenge", func(c *Config) { c.ACME.Challenges = []string{"http-02"} }, "acme.challenges[0]", `unknown challenge "http-02" (want http-01, tls-alpn-01, dns-01)`},
		{"duplicate challenge", func(c *Config) { c.ACME.Challenges = []string{"dns-01", "dns-01"} }, "acme.challenges[1]", "listed twice"},
		{"bad directory", func(c *Config) { c.ACME.Directory = "ftp://x" }, "acme.directory", "want an http(s) URL"},
		{"bad email", func(c *Config) { c.ACME.Email = "ops" }, "acme.email", "want an email address"},
		{"eab without key", func(c *Config) { c.ACME.EAB = &EABConfig{KeyID: "k"} }, "acme.eab.mac_key", "required"},
		{"bad resolver", func(c *Config) { c.ACME.DNS01.Resolvers = []string{"127.0.0.1"} }, "acme.dns01.resolvers[0]", "want host:port"},
		{"on-demand unguarded", func(c *Config) { c.OnDemand.Enabled = true }, "on_demand", "needs allow or ask"},
		{"on-demand bad ask", func(c *Config) {
			c.OnDemand = OnDemandConfig{Enabled: true, Ask: "nope", AskTimeout: units.Duration(time.Second)}
		}, "on_demand.ask", "want an http(s) URL"},
		{"preload without subdomains", func(c *Config) { c.HSTS.Preload = true }, "hsts.preload", "needs include_subdomains"},
		{"ratio out of range", func(c *Config) { c.RenewalWindowRatio = 1 }, "renewal_window_ratio", "must be within [0, 1)"},
		{"shared storage in mode internal", func(c *Config) { c.Mode = ModeInternal; c.Redis.Enabled = true }, "redis.enabled", "for mode acme"},
		{"lock ttl too short", func(c *Config) { c.Redis.LockTTL = units.Duration(time.Millisecond) }, "redis.lock_ttl", "at least 1s"},
		{"renew check too often", func(c *Config) { c.RenewCheckInterval = units.Duration(time.Millisecond) }, "renew_check_interval", "at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Enabled: true, Names: []string{"demo.test"}}
			c.SetDefaults()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			var found bool
			for _, fe := range configerr.Fields(err) {
				if fe.Path == tc.path && strings.Contains(fe.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want %s: %s, got %v", tc.path, tc.msg, err)
			}
		})
	}
}
