package config

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/dns"
)

// configsDir is the repository's configs/ directory, seen from this package.
const configsDir = "../../configs"

// exampleEnv is the environment the shipped configs expect: the secrets
// an operator puts in /etc/outpost/outpost.env, and what `outpost demo`
// provides to demo.yaml.
func exampleEnv(t *testing.T, extra map[string]string) func(string) (string, bool) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{
		"OUTPOST_ADMIN_TOKEN":          "test-admin-token-0123456789",
		"OUTPOST_IDENTITY_SECRET":      "test-identity-secret-0123456789",
		"OUTPOST_JWT_SECRET":           "test-jwt-hs256-secret-0123456789abcdef",
		"OUTPOST_TSIG_SECRET":          "dGVzdC10c2lnLXNlY3JldC0wMTIzNDU2Nzg5YWI=",
		"OUTPOST_REDIS_PASSWORD":       "test-redis-password",
		"OUTPOST_DEMO_DATA":            "/tmp/outpost-demo-test",
		"OUTPOST_DEMO_TOKEN":           "demo-token-0123456789",
		"OUTPOST_DEMO_IDENTITY_SECRET": "demo-identity-secret-0123456789",
		"OUTPOST_DEMO_JWT_PUBLIC_KEY":  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		"OUTPOST_DEMO_JWT_KID":         "demo-key-1",
	}
	for k, v := range extra {
		m[k] = v
	}
	return env(m)
}

func readConfig(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(configsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestShippedConfigsValidate parses every configs/*.yaml as `outpost
// check-config` would, once per node it is meant for.
func TestShippedConfigsValidate(t *testing.T) {
	type nodeCase struct {
		node string            // --node; "" for none
		env  map[string]string // per-node environment
	}
	cases := map[string]struct {
		nodes  []nodeCase
		noEnv  bool // must validate with an empty environment
		checks func(t *testing.T, c *Config)
	}{
		"outpost.example.yaml": {
			nodes: []nodeCase{{}, {node: "fra1"}, {node: "iad1"}, {node: "nrt1"}},
			noEnv: true,
			checks: func(t *testing.T, c *Config) {
				if !c.TLS.Enabled || c.DNS == nil || len(c.Pools) != 2 || len(c.Routes) != 4 || len(c.Nodes) != 3 {
					t.Errorf("sections: tls=%v dns=%v pools=%d routes=%d nodes=%d", c.TLS.Enabled, c.DNS != nil, len(c.Pools), len(c.Routes), len(c.Nodes))
				}
				if got := c.Pools["api"].Backends[0].Weight; got != 10 {
					t.Errorf("pools.api.backends[0].weight = %d, want 10", got)
				}
				if !strings.HasPrefix(c.Admin.Token, "example-only-") {
					t.Errorf("admin.token default not applied: %q", c.Admin.Token)
				}
				if !strings.Contains(c.Gateway.JWT.Keys[1].PublicKeyPEM, "BEGIN PUBLIC KEY") {
					t.Errorf("public_key_pem block scalar lost")
				}
			},
		},
		"single-node.yaml": {
			nodes: []nodeCase{{}, {node: "vps1"}},
			checks: func(t *testing.T, c *Config) {
				if c.Node != "vps1" || !c.TLS.Enabled || c.Cache.Dir != "/var/cache/outpost" || len(c.Pools) != 1 {
					t.Errorf("node=%q tls=%v cache.dir=%q pools=%d", c.Node, c.TLS.Enabled, c.Cache.Dir, len(c.Pools))
				}
			},
		},
		"production-3-nodes.yaml": {
			nodes: []nodeCase{
				{node: "fra1", env: map[string]string{"OUTPOST_ADMIN_LISTEN": "10.0.0.10:9090"}},
				{node: "iad1", env: map[string]string{"OUTPOST_ADMIN_LISTEN": "10.0.0.20:9090"}},
				{env: map[string]string{"OUTPOST_NODE": "nrt1", "OUTPOST_ADMIN_LISTEN": "10.0.0.30:9090"}},
			},
			checks: func(t *testing.T, c *Config) {
				self, ok := c.SelfNode()
				if !ok || self.Admin == "" || !strings.Contains(c.Admin.Listen, strings.TrimPrefix(strings.TrimSuffix(self.Admin, ":9090"), "http://")) {
					t.Errorf("node %q: admin.listen %q does not match its admin URL %q", c.Node, c.Admin.Listen, self.Admin)
				}
				if c.Redis.Addr == "" || !c.Gateway.Redis.Enabled {
					t.Errorf("global rate limits need redis.addr and gateway.redis.enabled")
				}
				if got := c.TLS.ACME.Challenges; len(got) != 1 || got[0] != "dns-01" {
					t.Errorf("a steered cluster must use dns-01 only, got %v", got)
				}
			},
		},
		"demo.yaml": {
			nodes: []nodeCase{
				{node: "eu", env: map[string]string{"OUTPOST_NODE": "eu", "OUTPOST_NODE_IP": "127.0.0.11"}},
				{node: "us", env: map[string]string{"OUTPOST_NODE": "us", "OUTPOST_NODE_IP": "127.0.0.12"}},
				{node: "ap", env: map[string]string{"OUTPOST_NODE": "ap", "OUTPOST_NODE_IP": "127.0.0.13"}},
			},
			checks: func(t *testing.T, c *Config) {
				self, _ := c.SelfNode()
				if c.Edge.Listen != self.IPv4.String()+":8080" {
					t.Errorf("node %s: edge.listen = %q", c.Node, c.Edge.Listen)
				}
			},
		},
	}

	files, err := filepath.Glob(filepath.Join(configsDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs found: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		tc, ok := cases[name]
		if !ok {
			t.Errorf("configs/%s has no case in TestShippedConfigsValidate: add one", name)
			continue
		}
		data := readConfig(t, name)
		for _, nc := range tc.nodes {
			t.Run(name+"/"+nc.node, func(t *testing.T) {
				lookup := exampleEnv(t, nc.env)
				if tc.noEnv {
					lookup = env(nil)
				}
				cfg, err := Parse(name, data, nc.node, lookup)
				if err != nil {
					t.Fatalf("%s does not validate:\n%s", name, Format(err))
				}
				if tc.checks != nil {
					tc.checks(t, cfg)
				}
			})
		}
	}
}

// TestShippedConfigsNeedTheirSecrets makes sure the deployable configs fail
// loudly, naming the variable, when a secret is missing — instead of
// starting with an empty token or signing secret.
func TestShippedConfigsNeedTheirSecrets(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"single-node.yaml", "admin.token: environment variable OUTPOST_ADMIN_TOKEN is not set"},
		{"single-node.yaml", "gateway.identity_secret: environment variable OUTPOST_IDENTITY_SECRET is not set"},
		{"production-3-nodes.yaml", "admin.token: environment variable OUTPOST_ADMIN_TOKEN is not set"},
		{"production-3-nodes.yaml", "redis.password: environment variable OUTPOST_REDIS_PASSWORD is not set"},
	} {
		t.Run(tc.file+"/"+tc.want[:strings.IndexByte(tc.want, ':')], func(t *testing.T) {
			_, err := Parse(tc.file, readConfig(t, tc.file), "", env(nil))
			if err == nil {
				t.Fatal("validated without its secrets")
			}
			if got := Format(err); !strings.Contains(got, tc.file+":") || !strings.Contains(got, tc.want) {
				t.Errorf("errors:\n%s\nwant a line with %q", got, tc.want)
			}
		})
	}
}

// TestShippedZones loads the zones the configs serve with the real DNS
// server (without listening), so a broken zone file or a steered name
// outside its zone fails here and not at a node's start.
func TestShippedZones(t *testing.T) {
	for _, tc := range []struct {
		file, node string
		zoneFile   string // replaces dns.zones[0].file when set
		zone       string
		serial     uint32
	}{
		{file: "production-3-nodes.yaml", node: "fra1", zoneFile: "example.com.zone", zone: "example.com.", serial: 2026120401},
		{file: "single-node.yaml", zone: "example.com.", serial: 2026120401},
		{file: "outpost.example.yaml", node: "fra1", zoneFile: "example.com.zone", zone: "example.com.", serial: 2026120401},
		{file: "demo.yaml", node: "eu", zoneFile: "demo.test.zone", zone: "demo.test.", serial: 2026120401},
	} {
		t.Run(tc.file, func(t *testing.T) {
			extra := map[string]string{"OUTPOST_NODE": "eu", "OUTPOST_NODE_IP": "127.0.0.11"}
			cfg, err := Parse(tc.file, readConfig(t, tc.file), tc.node, exampleEnv(t, extra))
			if err != nil {
				t.Fatalf("%s:\n%s", tc.file, Format(err))
			}
			dc := *cfg.DNS
			dc.Zones = append([]dns.ZoneConfig(nil), dc.Zones...)
			if tc.zoneFile != "" {
				dc.Zones[0].File = filepath.Join(configsDir, tc.zoneFile)
			}
			dc.Health.Disabled = true // no probes to documentation addresses
			srv, err := dns.New(dc, cfg.Nodes, dns.Options{})
			if err != nil {
				t.Fatalf("dns.New: %v", err)
			}
			defer srv.Shutdown(context.Background())
			if serial, ok := srv.Serial(tc.zone); !ok || serial != tc.serial {
				t.Errorf("zone %s: serial %d (served %v), want %d; zones %v", tc.zone, serial, ok, tc.serial, srv.Zones())
			}
			var ns int
			for _, rr := range srv.Records(tc.zone) {
				if strings.Contains(rr.String(), "\tIN\tNS\t") && rr.Header().Name == tc.zone {
					ns++
				}
			}
			if ns < 2 {
				t.Errorf("zone %s has %d NS records at the apex; registrars want at least 2", tc.zone, ns)
			}
		})
	}
}

// TestExampleDocumentsEveryKey walks the config types and the example file
// together: every key Outpost accepts must appear in
// configs/outpost.example.yaml, with a comment on at least one occurrence.
func TestExampleDocumentsEveryKey(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal(readConfig(t, "outpost.example.yaml"), &root); err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	typeKeys(reflect.TypeOf(Config{}), "", all, 0)
	seen := map[string]bool{}      // path → appears
	commented := map[string]bool{} // path → some occurrence carries a comment
	exampleKeys(root.Content[0], reflect.TypeOf(Config{}), "", false, seen, commented)

	var missing, silent []string
	for p := range all {
		switch {
		case !seen[p]:
			missing = append(missing, p)
		case !commented[p]:
			silent = append(silent, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(silent)
	if len(missing) > 0 {
		t.Errorf("configs/outpost.example.yaml does not show these keys (add them with their default and unit):\n  %s", strings.Join(missing, "\n  "))
	}
	if len(silent) > 0 {
		t.Errorf("configs/outpost.example.yaml shows these keys without any comment:\n  %s", strings.Join(silent, "\n  "))
	}
	if len(all) < 200 {
		t.Errorf("only %d keys found in the config types; the walk is broken", len(all))
	}
}

// typeKeys records every YAML key path of t: map keys become "*", list
// items "[]".
func typeKeys(t reflect.Type, path string, out map[string]bool, depth int) {
	if depth > 20 {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isLeaf(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		for name, ft := range structFields(t) {
			p := joinKey(path, name)
			out[p] = true
			typeKeys(ft, p, out, depth+1)
		}
	case reflect.Map:
		typeKeys(t.Elem(), joinKey(path, "*"), out, depth+1)
	case reflect.Slice, reflect.Array:
		typeKeys(t.Elem(), path+"[]", out, depth+1)
	}
}

// exampleKeys walks the example's YAML along the types, recording the key
// paths present and those with a comment. inFlowComment says an enclosing
// flow mapping ({a: 1, b: 2}) is commented as a whole.
func exampleKeys(n *yaml.Node, t reflect.Type, path string, inFlowComment bool, seen, commented map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isLeaf(t) {
		return
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := structFields(t)
		flowComment := inFlowComment || (n.Style&yaml.FlowStyle != 0 && hasComment(n))
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				continue // Parse reports unknown keys
			}
			p := joinKey(path, k.Value)
			seen[p] = true
			if hasComment(k) || hasComment(v) || flowComment {
				commented[p] = true
			}
			exampleKeys(v, ft, p, flowComment || (v.Style&yaml.FlowStyle != 0 && (hasComment(k) || hasComment(v))), seen, commented)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			flow := inFlowComment || (v.Style&yaml.FlowStyle != 0 && (hasComment(k) || hasComment(v)))
			exampleKeys(v, t.Elem(), joinKey(path, "*"), flow, seen, commented)
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			flow := inFlowComment || (item.Style&yaml.FlowStyle != 0 && hasComment(item))
			exampleKeys(item, t.Elem(), path+"[]", flow, seen, commented)
		}
	}
}

func hasComment(n *yaml.Node) bool {
	return n.HeadComment != "" || n.LineComment != "" || n.FootComment != ""
}

// isLeaf reports types written as one scalar (or a list/map of scalars).
func isLeaf(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.PkgPath() == "net/netip" {
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		return false
	case reflect.Map, reflect.Slice, reflect.Array:
		return isLeaf(t.Elem())
	}
	return true
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// TestExampleErrorsNameFileLineField breaks the example in typical ways and
// checks what `outpost check-config` would print: file:line: field: what
// is wrong and what is wanted. The line is where the broken text is, found
// in the file, so the example can grow without editing this test.
func TestExampleErrorsNameFileLineField(t *testing.T) {
	const file = "outpost.example.yaml"
	src := string(readConfig(t, file))
	cases := []struct {
		name     string
		old, new string // replace old (which must occur exactly once) with new
		want     string // "%d" is the line of old
	}{
		{"unknown key", "  access_log: true ", "  access_logs: true ",
			`outpost.example.yaml:%d: edge.access_logs: unknown key "access_logs" (want one of access_log, client_body_timeout, fast_http1, fast_http2, idle_timeout, listen, max_connections, max_header_bytes, notsent_lowat, read_header_timeout, read_timeout, send_timeout, sendfile, shutdown_delay, shutdown_timeout, trusted_proxies, via, write_timeout)`},
		{"duration without unit", "  idle_timeout: 120s ", "  idle_timeout: 120 ",
			`outpost.example.yaml:%d: edge.idle_timeout: want a duration such as "30s" or "5m", got "120"`},
		{"pool policy typo", "    policy: consistent_hash\n", "    policy: round-robbin\n",
			`outpost.example.yaml:%d: pools.api.policy: unknown policy "round-robbin" (want round_robin, least_connections, ip_hash, consistent_hash, p2c)`},
		{"backend weight", "        weight: 10                        # relative", "        weight: 1001                      # relative",
			`outpost.example.yaml:%d: pools.api.backends[0].weight: must be between 1 and 1000, got 1001`},
		{"cache eviction", "  eviction: s3fifo ", "  eviction: arc ",
			`outpost.example.yaml:%d: cache.eviction: unknown policy "arc" (want s3fifo, lru)`},
		{"route pool", "    pool: web                   # a name", "    pool: webb                  # a name",
			`outpost.example.yaml:%d: routes[0].pool: unknown pool "webb" (want one of the names under pools:)`},
		{"ttl class", "          class: long           #", "          class: forever        #",
			`outpost.example.yaml:%d: routes[0].cache.ttl_rules[0].class: unknown class "forever" (want short, medium, long)`},
		{"auth mode", "        mode: required          #", "        mode: mandatory         #",
			`outpost.example.yaml:%d: routes[1].gateway.auth.mode: unknown mode "mandatory" (want required, optional, none)`},
		{"rate-limit window", "        window: 1m              # whole seconds", "        window: 1500ms          # whole seconds",
			`outpost.example.yaml:%d: routes[1].gateway.rate_limit.window: must be a whole number of seconds >= 1s, got 1.5s`},
		{"steered ttl", "      ttl: 30s                  # >= 1s", "      ttl: 500ms                # >= 1s",
			`outpost.example.yaml:%d: dns.steered[0].ttl: must be >= 1s, got 500ms`},
		{"wildcard without dns-01", "    challenges: [http-01, tls-alpn-01, dns-01]", "    challenges: [http-01, tls-alpn-01]",
			`outpost.example.yaml:%d: tls.acme.challenges: wildcard names need dns-01`},
		{"latitude", "    lat: 50.11 ", "    lat: 95 ",
			`outpost.example.yaml:%d: nodes[0].lat: must be within [-90, 90], got 95`},
		{"wrong type", "    rise: 2                     # successes", "    rise: two                   # successes",
			`outpost.example.yaml:%d: dns.health.rise: want a whole number, got "two"`},
		{"missing secret", "  token: ${OUTPOST_ADMIN_TOKEN:-example-only-admin-token-change-me}", "  token: ${OUTPOST_ADMIN_TOKEN}",
			`outpost.example.yaml:%d: admin.token: environment variable OUTPOST_ADMIN_TOKEN is not set`},
		{"short admin token", "  token: ${OUTPOST_ADMIN_TOKEN:-example-only-admin-token-change-me}", "  token: ${OUTPOST_ADMIN_TOKEN:-short}",
			`outpost.example.yaml:%d: admin.token: must be at least 16 characters`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if n := strings.Count(src, tc.old); n != 1 {
				t.Fatalf("%q occurs %d times in %s; the case needs exactly one", tc.old, n, file)
			}
			i := strings.Index(src, tc.old)
			line := strings.Count(src[:i+strings.IndexFunc(tc.old, func(r rune) bool { return r != ' ' && r != '\n' })], "\n") + 1
			broken := strings.Replace(src, tc.old, tc.new, 1)
			_, err := Parse(file, []byte(broken), "", env(nil))
			if err == nil {
				t.Fatal("the broken example validated")
			}
			got := Format(err)
			want := fmt.Sprintf(tc.want, line)
			if !containsLine(got, want) {
				t.Errorf("errors:\n%s\nwant the line:\n%s", got, want)
			}
		})
	}

	// Several problems at once: all listed, one per line, sorted by line.
	broken := src
	for _, r := range [][2]string{
		{"    policy: consistent_hash\n", "    policy: random\n"},
		{"  level: info ", "  level: loud "},
		{"  eviction: s3fifo ", "  eviction: arc "},
	} {
		broken = strings.Replace(broken, r[0], r[1], 1)
	}
	_, err := Parse(file, []byte(broken), "", env(nil))
	got := Format(err)
	lines := strings.Split(strings.TrimSpace(got), "\n")
	re := regexp.MustCompile(`^outpost\.example\.yaml:(\d+): `)
	prev := 0
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line without file:line: %q", l)
			continue
		}
		var n int
		fmt.Sscan(m[1], &n)
		if n < prev {
			t.Errorf("errors not sorted by line:\n%s", got)
		}
		prev = n
	}
	for _, w := range []string{"log.level: unknown level", "pools.api.policy: unknown policy \"random\"", "cache.eviction: unknown policy \"arc\""} {
		if !strings.Contains(got, w) {
			t.Errorf("errors:\n%s\nwant one containing %q", got, w)
		}
	}
}

func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}
