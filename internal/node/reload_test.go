package node

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/dns"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/logtest"
	"github.com/outpost-edge/outpost/internal/units"
)

// reloadYAML is a node with DNS (one zone file), a gateway, and the pool
// api behind the route app. Each extra pool gets a route at /<name>.
func reloadYAML(dataDir, dnsAddr, zoneFile, apiURL string, extra ...string) string {
	var pools, routes strings.Builder
	for _, name := range extra {
		fmt.Fprintf(&pools, "  %s:\n    backends:\n      - {id: b, url: %q}\n", name, apiURL)
		fmt.Fprintf(&routes, "  - {name: %s, path_prefix: /%s, pool: %s}\n", name, name, name)
	}
	return fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
dns:
  listen: [%q]
  rrl: {disabled: true}
  health: {disabled: true}
  zones:
    - file: %s
pools:
  api:
    backends:
      - {id: a, url: %q}
%sgateway:
  identity_secret: reload-test-identity-secret-0123456789
routes:
  - name: app
    pool: api
    gateway:
      auth: {mode: none}
%s`, dataDir, dnsAddr, zoneFile, apiURL, pools.String(), routes.String())
}

// zoneText is the zone example.test with www at addr; line 4 is www.
func zoneText(addr string) string {
	return "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\nwww IN A " + addr + "\n"
}

// freeDNSAddr finds a 127.0.0.1 port free on both UDP and TCP, for a DNS
// server that opens its own sockets.
func freeDNSAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			ln.Close()
			return pc.LocalAddr().String()
		}
	}
	t.Fatal("no free port pair")
	return ""
}

// lookupA asks addr over UDP for name's A records.
func lookupA(t *testing.T, addr, name string) []string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

// TestApplyIsAllOrNothing applies configs that change DNS, pools and
// routes at once while breaking one part (or several): the reload must be
// refused with every culprit named, and the node must go on exactly as
// before, checked over real sockets. A good config then applies in full.
func TestApplyIsAllOrNothing(t *testing.T) {
	mk := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := mk("a"), mk("b")
	dir := t.TempDir()
	zone := filepath.Join(dir, "example.test.zone")
	writeZone := func(text string) {
		t.Helper()
		if err := os.WriteFile(zone, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeZone(zoneText("192.0.2.1"))
	dnsAddr := freeDNSAddr(t)
	dataDir := t.TempDir()
	n, base := startNode(t, reloadYAML(dataDir, dnsAddr, zone, a.URL))
	cfg0, api := n.Config(), n.Pools()["api"]

	// The new config moves api to b, adds the pool extra with a route, and
	// (in the zone file) moves www to 192.0.2.2.
	newConfig := func(t *testing.T) *config.Config {
		t.Helper()
		cfg, err := config.Parse("new.yaml", []byte(reloadYAML(dataDir, dnsAddr, zone, b.URL, "extra")), "", nil)
		if err != nil {
			t.Fatalf("config: %v", config.Format(err))
		}
		return cfg
	}
	brokenZone := zoneText("192.0.2.x") // line 4 does not parse
	for _, tc := range []struct {
		name   string
		zone   string
		mutate func(*config.Config) // after Parse: Apply gets configs the loader never checked, too
		want   []string
	}{
		{
			name:   "gateway broken, zone and pools changed",
			zone:   zoneText("192.0.2.2"),
			mutate: func(c *config.Config) { c.Gateway.IdentitySecret = "short" },
			want:   []string{"gateway.identity_secret: must be at least 16 bytes"},
		},
		{
			name: "zone file unparsable, routes and pools changed",
			zone: brokenZone,
			want: []string{"dns: zones[0]: " + zone + ":4: "},
		},
		{
			name:   "route names an unknown pool, zone changed",
			zone:   zoneText("192.0.2.2"),
			mutate: func(c *config.Config) { c.Routes[1].Pool = "nope" },
			want:   []string{`routes[1] (extra): pool "nope" is not configured`},
		},
		{
			name:   "route uses a pool the config drops",
			zone:   zoneText("192.0.2.2"),
			mutate: func(c *config.Config) { delete(c.Pools, "api") },
			want:   []string{`routes[0] (app): pool "api" is not configured`},
		},
		{
			name:   "new pool invalid, zone changed",
			zone:   zoneText("192.0.2.2"),
			mutate: func(c *config.Config) { c.Pools["extra"].Backends[0].Weight = 5000 },
			want:   []string{"pools.extra.backends[0].weight: must be between 1 and 1000, got 5000"},
		},
		{
			name: "steered name outside every zone, pools changed",
			zone: zoneText("192.0.2.2"),
			mutate: func(c *config.Config) {
				c.DNS.Steered = []dns.SteeredName{{Name: "www.elsewhere.test", Answers: 1, TTL: units.Duration(time.Minute)}}
			},
			want: []string{"dns: steered name www.elsewhere.test. is not inside any served zone"},
		},
		{
			name:   "DNS turned off",
			zone:   zoneText("192.0.2.2"),
			mutate: func(c *config.Config) { c.DNS = nil },
			want:   []string{"dns: turning DNS on or off needs a restart"},
		},
		{
			name: "everything at once",
			zone: brokenZone,
			mutate: func(c *config.Config) {
				c.Gateway.IdentitySecret = "short"
				c.Routes[1].Pool = "nope"
				c.Pools["extra"].Backends[0].Weight = 5000
			},
			want: []string{
				"gateway.identity_secret:",
				"dns: zones[0]: " + zone + ":4: ",
				`routes[1] (extra): pool "nope"`,
				"pools.extra.backends[0].weight:",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeZone(tc.zone)
			cfg := newConfig(t)
			if tc.mutate != nil {
				tc.mutate(cfg)
			}
			gen, err := n.Apply(cfg)
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
			if gen != 1 || n.Generation() != 1 || n.Config() != cfg0 {
				t.Errorf("generation %d (returned %d), config changed: %v; want 1, unchanged", n.Generation(), gen, n.Config() != cfg0)
			}
			if got := lookupA(t, dnsAddr, "www.example.test."); !slices.Equal(got, []string{"192.0.2.1"}) {
				t.Errorf("DNS answers www = %v, want the old 192.0.2.1", got)
			}
			pools := n.Pools()
			if len(pools) != 1 || pools["api"] != api {
				t.Errorf("pools = %v, want only the running api", pools)
			}
			if bs := api.Backends(); len(bs) != 1 || bs[0].URL() != a.URL {
				t.Errorf("api backends changed: %v", bs)
			}
			if got := getBody(t, base+"/"); got != "a" {
				t.Errorf("route app served %q, want the old backend a", got)
			}
		})
	}

	t.Run("good config applies in full", func(t *testing.T) {
		writeZone(zoneText("192.0.2.2"))
		gen, err := n.Apply(newConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		if gen != 2 || n.Generation() != 2 {
			t.Errorf("generation %d (returned %d), want 2", n.Generation(), gen)
		}
		if got := lookupA(t, dnsAddr, "www.example.test."); !slices.Equal(got, []string{"192.0.2.2"}) {
			t.Errorf("DNS answers www = %v, want 192.0.2.2", got)
		}
		pools := n.Pools()
		if len(pools) != 2 || pools["api"] != api || pools["extra"] == nil {
			t.Errorf("pools = %v, want api (updated in place) and extra", pools)
		}
		for path, want := range map[string]string{"/": "b", "/extra": "b"} {
			if got := getBody(t, base+path); got != want {
				t.Errorf("GET %s served %q, want %q", path, got, want)
			}
		}
	})
}

// TestReloadWarnsAboutServerLimits: the edge's server limits are set when
// the listeners start; a reload that changes them applies the rest and
// says, naming each changed key, that they wait for a restart.
func TestReloadWarnsAboutServerLimits(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	dir := t.TempDir()
	yaml := func(send string, maxConns int, sendfile bool, lowat string) string {
		return fmt.Sprintf("node: test\ndata_dir: %s\nedge:\n  listen: 127.0.0.1:0\n  send_timeout: %s\n  max_connections: %d\n  sendfile: %v\n  notsent_lowat: %s\nroutes:\n  - {name: app, upstream: %q}\n",
			dir, send, maxConns, sendfile, lowat, up.URL)
	}
	var logs logtest.Buffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := startNodeWith(t, yaml("60s", 100, true, "16KiB"), Options{EdgeListener: ln, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	cfg, err := config.Parse("test.yaml", []byte(yaml("5s", 200, false, "0")), "", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(config.Format(err))
	}
	if _, err := n.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, key := range []string{"edge.send_timeout", "edge.max_connections", "edge.sendfile", "edge.notsent_lowat"} {
		if !strings.Contains(out, `"section":"`+key+`"`) {
			t.Errorf("no restart warning for %s in:\n%s", key, out)
		}
	}
	if strings.Contains(out, `"section":"edge.idle_timeout"`) {
		t.Errorf("a warning for an unchanged key:\n%s", out)
	}
}
