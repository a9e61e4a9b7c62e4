package lb

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/configerr"
	"gopkg.in/yaml.v3"
)

func TestConfigDecodeDefaults(t *testing.T) {
	src := `
backends:
  - url: http://10.0.0.1:8080
  - url: https://api-2.internal/v1/
    weight: 3
    zone: eu
    id: api-2
policy: consistent_hash
hash_key: header:X-Tenant
health:
  path: /healthz
  interval: 2s
sticky:
  enabled: true
`
	var c PoolConfig
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"id default", c.Backends[0].ID, "10.0.0.1:8080"},
		{"weight default", c.Backends[0].Weight, 1},
		{"jitter default", c.Health.Jitter.D(), 200 * time.Millisecond},
		{"rise", c.Health.Rise, 2},
		{"fall", c.Health.Fall, 3},
		{"status", c.Health.ExpectStatus, "200-399"},
		{"tries", c.Retries.MaxTries, 3},
		{"ratio", c.Retries.BudgetRatio, 0.2},
		{"cookie", c.Sticky.Cookie, "outpost_lb"},
		{"total", c.Timeouts.Total.D(), time.Minute},
		{"idle", c.Transport.MaxIdlePerBackend, 128},
		{"ejected", c.Outlier.MaxEjectedPercent, 50},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() PoolConfig {
		return PoolConfig{Backends: []BackendConfig{{URL: "http://127.0.0.1:9001"}, {URL: "http://127.0.0.1:9002"}}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *PoolConfig)
		want   string // one expected "path: message"
	}{
		{"policy typo", func(c *PoolConfig) { c.Policy = "round-robbin" },
			`policy: unknown policy "round-robbin" (want round_robin, least_connections, ip_hash, consistent_hash, p2c)`},
		{"no backends", func(c *PoolConfig) { c.Backends = nil }, "backends: at least one backend is required"},
		{"weight", func(c *PoolConfig) { c.Backends[1].Weight = -1 }, "backends[1].weight: must be between 1 and 1000, got -1"},
		{"scheme", func(c *PoolConfig) { c.Backends[0].URL = "ftp://x" }, `backends[0].url: want an http:// or https:// URL, got "ftp://x"`},
		{"query", func(c *PoolConfig) { c.Backends[0].URL = "http://x/?a=1" }, "backends[0].url: must not carry user info, query or fragment"},
		{"no host", func(c *PoolConfig) { c.Backends[0].URL = "http:///x" }, "backends[0].url: missing host"},
		{"dup id", func(c *PoolConfig) { c.Backends[0].ID = "a"; c.Backends[1].ID = "a" }, `backends[1].id: duplicate backend id "a" (also backends[0])`},
		{"bad id", func(c *PoolConfig) { c.Backends[0].ID = "a/b" }, `backends[0].id: must be 1-128 letters`},
		{"hash key", func(c *PoolConfig) { c.Policy = PolicyConsistentHash; c.HashKey = "query:x" }, `hash_key: want "uri", "header:NAME" or "cookie:NAME", got "query:x"`},
		{"hash key unused", func(c *PoolConfig) { c.HashKey = "uri" }, `hash_key: only used by policy consistent_hash`},
		{"status", func(c *PoolConfig) { c.Health.ExpectStatus = "399-200" }, `health.expect_status: want a status or range`},
		{"health path", func(c *PoolConfig) { c.Health.Path = "healthz" }, `health.path: must start with "/"`},
		{"tries", func(c *PoolConfig) { c.Retries.MaxTries = 11 }, "retries.max_tries: must be between 1 and 10, got 11"},
		{"ratio", func(c *PoolConfig) { c.Retries.BudgetRatio = -1 }, "retries.budget_ratio: must be in (0, 10], got -1"},
		{"percent", func(c *PoolConfig) { c.Outlier.MaxEjectedPercent = 101 }, "outlier.max_ejected_percent: must be between 1 and 100, got 101"},
		{"secret", func(c *PoolConfig) { c.Sticky.Secret = "short" }, "sticky.secret: must be at least 16 bytes, got 5"},
		{"cookie", func(c *PoolConfig) { c.Sticky.Cookie = "a b" }, `sticky.cookie: must be a valid cookie name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			c.SetDefaults()
			err := c.Validate()
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var msgs []string
			for _, fe := range configerr.Fields(err) {
				msgs = append(msgs, fe.Error())
			}
			found := false
			for _, m := range msgs {
				if strings.HasPrefix(m, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("errors %q, want one starting %q", msgs, tc.want)
			}
			if strings.Contains(err.Error(), "short\"") {
				t.Errorf("secret echoed in error")
			}
		})
	}
}

// TestConfigValidateOneErrorPerMistake: a backend URL without a host leaves
// the derived id empty; only the url is reported, not a follow-on id error.
func TestConfigValidateOneErrorPerMistake(t *testing.T) {
	for _, u := range []string{"x", "http:///x", "ftp://"} {
		c := PoolConfig{Backends: []BackendConfig{{URL: u}}}
		c.SetDefaults()
		fields := configerr.Fields(c.Validate())
		if len(fields) != 1 || fields[0].Path != "backends[0].url" {
			t.Errorf("url %q: errors %v, want one on backends[0].url", u, fields)
		}
	}
}

// TestCheckConfig: CheckConfig reports what Validate does after defaults,
// and leaves the caller's backends undefaulted.
func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  string
		want string // "" for no error
	}{
		{"valid", "http://127.0.0.1:9001", ""},
		{"bad url", "ftp://x", `backends[0].url: want an http:// or https:// URL, got "ftp://x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := PoolConfig{Backends: []BackendConfig{{URL: tc.url}}}
			err := CheckConfig(c)
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || !strings.Contains(got, tc.want) {
				t.Errorf("CheckConfig = %v, want %q", err, tc.want)
			}
			if b := c.Backends[0]; b.Weight != 0 || b.ID != "" {
				t.Errorf("caller's backend defaulted: %+v", b)
			}
		})
	}
}
