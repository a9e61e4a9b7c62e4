package dns

import (
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/testclock"
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

// decodeRRL decodes an `rrl:` section strictly and applies the defaults.
func decodeRRL(t *testing.T, doc string) Config {
	t.Helper()
	var c Config
	dec := yaml.NewDecoder(strings.NewReader("zones: [{origin: example.com, records: ['@ IN NS ns1']}]\n" + doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	return c
}

// TestConfigRRLSlip: an explicit `slip: 0` (drop every limited response)
// survives SetDefaults; no `slip` key means the default, 2.
func TestConfigRRLSlip(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want int
	}{
		{"", 2},
		{"rrl: {responses_per_second: 10}", 2},
		{"rrl: {slip: ~}", 2},
		{"rrl: {slip: 0}", 0},
		{"rrl: {slip: 1}", 1},
		{"rrl: {slip: 3}", 3},
	} {
		c := decodeRRL(t, tc.doc)
		if err := c.Validate(); err != nil {
			t.Fatalf("%q: %v", tc.doc, err)
		}
		if c.RRL.Slip != tc.want {
			t.Errorf("%q: slip %d, want %d", tc.doc, c.RRL.Slip, tc.want)
		}
		c.SetDefaults() // a reload may apply the defaults again
		if c.RRL.Slip != tc.want {
			t.Errorf("%q: slip %d after a second SetDefaults, want %d", tc.doc, c.RRL.Slip, tc.want)
		}
	}
	var c Config
	c.RRL.Slip = 3 // set from Go
	c.SetDefaults()
	if c.RRL.Slip != 3 {
		t.Errorf("slip set from Go: %d, want 3", c.RRL.Slip)
	}
	c = decodeRRL(t, "rrl: {slip: 11}")
	if err := c.Validate(); err == nil {
		t.Error("slip 11 accepted")
	}
}

// TestRRLSlipZero: with `slip: 0` a limited client gets no answer at all,
// never an empty truncated one.
func TestRRLSlipZero(t *testing.T) {
	clk := testclock.New(time.Unix(1e9, 0))
	cfg := decodeRRL(t, "rrl: {responses_per_second: 3, slip: 0}")
	cfg.Zones = []ZoneConfig{{File: testdata("example.com.zone")}}
	cfg.Health.Disabled = true
	m, _ := NewMetrics(nil)
	_, addr := startServer(t, cfg, nil, Options{Now: clk.Now, Metrics: m})
	var answered, slipped, dropped int
	for _, name := range []string{"www.example.com.", "example.com.", "nope.example.com."} {
		b, _ := newQuery(name, mdns.TypeA).Pack()
		for i := 0; i < 3; i++ {
			resp := rawUDP(t, addr, b, 300*time.Millisecond)
			if resp == nil {
				dropped++
				continue
			}
			var r mdns.Msg
			if err := r.Unpack(resp); err != nil {
				t.Fatal(err)
			}
			if r.Truncated {
				slipped++
			} else {
				answered++
			}
		}
	}
	if answered != 3 || slipped != 0 || dropped != 6 {
		t.Fatalf("answered %d slipped %d dropped %d, want 3/0/6", answered, slipped, dropped)
	}
	if testutil.ToFloat64(m.rrlDrop) != 6 || testutil.ToFloat64(m.rrlSlip) != 0 {
		t.Fatalf("RRL metrics: drop %v slip %v", testutil.ToFloat64(m.rrlDrop), testutil.ToFloat64(m.rrlSlip))
	}
}
