package dns

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
	c.Steered = []SteeredName{{Name: "www.example.com"}}
	c.Transfer.Keys = []TSIGKey{{Name: "k", Secret: testSecret}}
	c.SetDefaults()
	if c.Listen[0] != ":53" || c.EDNSSize != 1232 || c.Steered[0].Answers != 1 || c.Steered[0].TTL.D() != 30*time.Second ||
		c.Health.Interval.D() != 5*time.Second || c.Health.Rise != 2 || c.Health.Fall != 3 || c.Health.Path != "/healthz" ||
		c.RRL.ResponsesPerSecond != 50 || c.RRL.Slip != 2 || c.RRL.IPv4Prefix != 24 || c.RRL.IPv6Prefix != 56 ||
		c.Transfer.Keys[0].Algorithm != "hmac-sha256" {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigYAML(t *testing.T) {
	const doc = `
listen: ["127.0.0.1:8053"]
edns_size: 1400
zones:
  - origin: demo.test
    records: ["@ IN NS ns1", "ns1 IN A 127.0.0.1"]
steered:
  - name: www.demo.test
    answers: 2
    ttl: 20s
geo:
  overrides: [{cidr: 10.0.0.0/8, region: eu}]
health: {interval: 2s, timeout: 1s, rise: 1, fall: 2}
rrl: {responses_per_second: 20, slip: 3, exempt: [127.0.0.0/8]}
transfer:
  keys: [{name: xfr, algorithm: hmac-sha512, secret: "` + testSecret + `"}]
  secondaries: [{address: 192.0.2.0/24, key: xfr}]
  notify: [{address: "192.0.2.53:53", key: xfr}]
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Steered[0].TTL.D() != 20*time.Second || c.RRL.Burst != 20 || c.Health.Timeout.D() != time.Second {
		t.Fatalf("decoded %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		path   string
		msg    string
	}{
		{"listen", func(c *Config) { c.Listen = []string{"nope"} }, "listen[0]", "host:port"},
		{"edns", func(c *Config) { c.EDNSSize = 100 }, "edns_size", "[512, 4096]"},
		{"zone empty", func(c *Config) { c.Zones = []ZoneConfig{{Origin: "a.test"}} }, "zones[0]", "file or records"},
		{"zone origin", func(c *Config) { c.Zones = []ZoneConfig{{Records: []string{"@ IN A 1.2.3.4"}}} }, "zones[0].origin", "required"},
		{"zone dup", func(c *Config) {
			c.Zones = []ZoneConfig{{Origin: "a.test", Records: []string{"@ IN A 192.0.2.1"}}, {Origin: "A.test.", Records: []string{"@ IN A 192.0.2.1"}}}
		}, "zones[1].origin", "already defined"},
		{"bad record", func(c *Config) { c.Zones = []ZoneConfig{{Origin: "a.test", Records: []string{"www IN A nope"}}} }, "zones[0].records[0]", "A"},
		{"steered answers", func(c *Config) {
			c.Steered = []SteeredName{{Name: "w.a.test", Answers: 0, TTL: units.Duration(time.Second)}}
		}, "steered[0].answers", "[1, 16]"},
		{"steered ttl", func(c *Config) { c.Steered = []SteeredName{{Name: "w.a.test", Answers: 1}} }, "steered[0].ttl", ">= 1s"},
		{"override", func(c *Config) { c.Geo.Overrides = []GeoOverride{{CIDR: "10/8", Region: "eu"}} }, "geo.overrides[0].cidr", "CIDR"},
		{"health timeout", func(c *Config) { c.Health.Timeout = units.Duration(time.Minute) }, "health.timeout", "<= interval"},
		{"health rise", func(c *Config) { c.Health.Rise = -1 }, "health.rise", ">= 1"},
		{"health path", func(c *Config) { c.Health.Path = "healthz" }, "health.path", "start with /"},
		{"rrl slip", func(c *Config) { c.RRL.Slip = 11 }, "rrl.slip", "[0, 10]"},
		{"rrl prefix", func(c *Config) { c.RRL.IPv4Prefix = 33 }, "rrl.ipv4_prefix", "[8, 32]"},
		{"tsig alg", func(c *Config) { c.Transfer.Keys = []TSIGKey{{Name: "k", Algorithm: "md5", Secret: testSecret}} }, "transfer.keys[0].algorithm", "unknown algorithm"},
		{"tsig secret", func(c *Config) { c.Transfer.Keys = []TSIGKey{{Name: "k", Algorithm: "hmac-sha256", Secret: "%%%"}} }, "transfer.keys[0].secret", "base64"},
		{"secondary key", func(c *Config) { c.Transfer.Secondaries = []Secondary{{Address: "192.0.2.1", Key: "nokey"}} }, "transfer.secondaries[0].key", "unknown key"},
		{"secondary addr", func(c *Config) { c.Transfer.Secondaries = []Secondary{{Address: "host"}} }, "transfer.secondaries[0].address", "IP or CIDR"},
		{"notify addr", func(c *Config) { c.Transfer.Notify = []NotifyTarget{{Address: "192.0.2.1"}} }, "transfer.notify[0].address", "ip:port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			c.SetDefaults()
			tc.mutate(&c)
			err := c.Validate()
			for _, fe := range configerr.Fields(err) {
				if fe.Path == tc.path && strings.Contains(fe.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("error %v, want %s: ...%s...", err, tc.path, tc.msg)
		})
	}
}
