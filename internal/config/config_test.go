package config

import (
	"strings"
	"testing"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// wantParseErrors parses src and checks that the formatted errors contain
// every line of want and none of not.
func wantParseErrors(t *testing.T, src string, vars map[string]string, want, not []string) {
	t.Helper()
	_, err := Parse("outpost.yaml", []byte(src), "", env(vars))
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	got := Format(err)
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("errors:\n%s\nwant a line containing:\n%s", got, w)
		}
	}
	for _, n := range not {
		if strings.Contains(got, n) {
			t.Errorf("errors leak %q:\n%s", n, got)
		}
	}
}

func TestParseValid(t *testing.T) {
	src := `
node: eu
data_dir: /tmp/x
nodes:
  - name: eu
    ipv4: 127.0.0.11
    region: eu
    lat: 50
    lon: 8
edge:
  listen: 127.0.0.1:8080
  trusted_proxies: [10.0.0.0/8]
  read_header_timeout: 5s
  max_header_bytes: 32KiB
admin:
  token: ${ADMIN_TOKEN}
routes:
  - name: app
    hosts: [www.example.com, "*.example.org"]
    upstream: http://127.0.0.1:9001
`
	cfg, err := Parse("outpost.yaml", []byte(src), "", env(map[string]string{"ADMIN_TOKEN": "0123456789abcdef-secret"}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.Admin.Token != "0123456789abcdef-secret" {
		t.Errorf("token not expanded: %q", cfg.Admin.Token)
	}
	if cfg.Edge.ReadHeaderTimeout.D().Seconds() != 5 || cfg.Edge.MaxHeaderBytes != 32<<10 {
		t.Errorf("units: %v %v", cfg.Edge.ReadHeaderTimeout, cfg.Edge.MaxHeaderBytes)
	}
	if cfg.Routes[0].PathPrefix != "/" || cfg.Routes[0].Timeout.D().Seconds() != 30 {
		t.Errorf("route defaults: %+v", cfg.Routes[0].Route)
	}
	if got, want := cfg.Nodes[0].Health, "http://127.0.0.11:8080/_outpost/healthz"; got != want {
		t.Errorf("health default = %q, want %q", got, want)
	}
	if cfg.Admin.Listen != "127.0.0.1:9090" {
		t.Errorf("admin listen default: %q", cfg.Admin.Listen)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		src  string
		env  map[string]string
		want []string // each must appear in the formatted errors
	}{
		{
			name: "unknown top-level key",
			src:  "edge:\n  listen: :80\nroutez: []\n",
			want: []string{`outpost.yaml:3: routez: unknown key "routez" (want one of admin, cache, data_dir, dns, edge, gateway, log, node, nodes, pools, redis, routes, tls)`},
		},
		{
			name: "unknown nested key",
			src:  "edge:\n  listen: :80\n  idle: 3s\n",
			want: []string{`outpost.yaml:3: edge.idle: unknown key "idle"`},
		},
		{
			name: "bad duration",
			src:  "edge:\n  idle_timeout: 10\n",
			want: []string{`outpost.yaml:2: edge.idle_timeout: want a duration such as "30s" or "5m", got "10"`},
		},
		{
			name: "bad type",
			src:  "nodes:\n  - name: a\n    ipv4: 1.2.3.4\n    lat: north\n",
			want: []string{`outpost.yaml:4: nodes[0].lat: want a number, got "north"`},
		},
		{
			name: "missing env",
			src:  "admin:\n  token: ${NOPE}\n",
			want: []string{`outpost.yaml:2: admin.token: environment variable NOPE is not set`},
		},
		{
			name: "route without upstream, bad log level; all listed",
			src:  "log:\n  level: loud\nroutes:\n  - name: r\n    path_prefix: /x\n",
			want: []string{
				`outpost.yaml:2: log.level: unknown level "loud" (want debug, info, warn, error)`,
				`outpost.yaml:4: routes[0].upstream: a route needs an upstream URL or a pool`,
			},
		},
		{
			name: "access log buffer and flush out of range",
			src:  "log:\n  access_buffer: 64MiB\n  access_flush: 5m\n",
			want: []string{
				`outpost.yaml:2: log.access_buffer: want 0 (off) to 16MiB, got 67108864`,
				`outpost.yaml:3: log.access_flush: want up to 1m, got 5m0s`,
			},
		},
		{
			name: "admin beyond loopback without token",
			src:  "admin:\n  listen: 0.0.0.0:9090\n",
			want: []string{`outpost.yaml:2: admin.listen: "0.0.0.0:9090" is not a loopback address, so admin.token is required`},
		},
		{
			name: "unknown pool",
			src:  "routes:\n  - name: api\n    pool: nope\n",
			want: []string{`outpost.yaml:3: routes[0].pool: unknown pool "nope"`},
		},
		{
			name: "yaml syntax",
			src:  "edge:\n  listen: [\n",
			want: []string{`outpost.yaml:`},
		},
		{
			name: "shared certificate storage without redis",
			src:  "tls:\n  enabled: true\n  names: [a.example.test]\n  redis: {enabled: true}\n",
			want: []string{`tls.redis.enabled: shared certificate storage needs a Redis server: set redis.addr`},
		},
		{
			name: "duplicate node",
			src:  "nodes:\n  - {name: a, ipv4: 1.2.3.4}\n  - {name: a, ipv4: 1.2.3.5}\n",
			want: []string{`outpost.yaml:3: nodes[1].name: duplicate node name "a"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantParseErrors(t, tc.src, tc.env, tc.want, nil) })
	}
}

func TestSectionErrorsNameFileLineField(t *testing.T) {
	src := `routes:
  - name: api
    pool: api
    gateway:
      methods: [GET]
pools:
  api:
    policy: round-robbin
    backends:
      - url: http://127.0.0.1:9001
`
	_, err := Parse("outpost.yaml", []byte(src), "", nil)
	if err == nil {
		t.Fatal("want an error")
	}
	want := `outpost.yaml:8: pools.api.policy: unknown policy "round-robbin" (want round_robin, least_connections`
	if got := Format(err); !strings.Contains(got, want) {
		t.Errorf("got:\n%s\nwant a line containing:\n%s", got, want)
	}
}

func TestUsesDataDir(t *testing.T) {
	base := "data_dir: /tmp/x\nadmin:\n  token: 0123456789abcdef-secret\n"
	tests := []struct {
		name string
		yaml string
		want bool
	}{
		{"plain proxy", "routes:\n  - name: a\n    upstream: http://127.0.0.1:9001\n", false},
		{"cache under data_dir", "routes:\n  - name: a\n    upstream: http://127.0.0.1:9001\n    cache: {}\n", true},
		{"cache elsewhere", "cache:\n  dir: /tmp/xcache\nroutes:\n  - name: a\n    upstream: http://127.0.0.1:9001\n    cache: {}\n", false},
		{"gateway", "routes:\n  - name: a\n    upstream: http://127.0.0.1:9001\n    gateway:\n      auth: {mode: none}\n", true},
		{"fan-out peers", "node: eu\nnodes:\n  - {name: eu, ipv4: 127.0.0.11, lat: 50, lon: 8}\n  - {name: us, ipv4: 127.0.0.12, lat: 39, lon: -77, admin: http://127.0.0.12:9090}\nroutes:\n  - name: a\n    upstream: http://127.0.0.1:9001\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("outpost.yaml", []byte(base+tc.yaml), "", env(nil))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := cfg.UsesDataDir(); got != tc.want {
				t.Errorf("UsesDataDir = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestNodeHealthDefault checks the URL other nodes' DNS probes: the edge's
// own endpoint on the edge port, for IPv6-only nodes too (they used to be
// probed on port 80, which the edge does not answer), or dns.health.path
// there when it is set.
func TestNodeHealthDefault(t *testing.T) {
	for _, tc := range []struct {
		name, node, listen, want string
	}{
		{"ipv4", "{name: a, ipv4: 192.0.2.1}", "", "http://192.0.2.1:80/_outpost/healthz"},
		{"ipv4 edge port", "{name: a, ipv4: 192.0.2.1, ipv6: \"2001:db8::1\"}", "127.0.0.1:8080", "http://192.0.2.1:8080/_outpost/healthz"},
		{"ipv6 only", "{name: a, ipv6: \"2001:db8::1\"}", "[::]:8080", "http://[2001:db8::1]:8080/_outpost/healthz"},
		{"explicit", "{name: a, ipv6: \"2001:db8::1\", health: \"http://[2001:db8::1]/up\"}", "", "http://[2001:db8::1]/up"},
		{"dns.health.path", "{name: a, ipv4: 192.0.2.1}", "", "http://192.0.2.1:80/status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "nodes: [" + tc.node + "]\n"
			if tc.listen != "" {
				src += "edge: {listen: \"" + tc.listen + "\"}\n"
			}
			if tc.name == "dns.health.path" {
				src += "dns: {zones: [{origin: example.test, records: [\"@ 60 IN A 192.0.2.1\"]}], health: {path: /status}}\n"
			}
			cfg, err := Parse("outpost.yaml", []byte(src), "", env(nil))
			if err != nil {
				t.Fatal(Format(err))
			}
			if got := cfg.Nodes[0].Health; got != tc.want {
				t.Errorf("health = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestNoFollowOnErrors: a field that did not decode is reported once, not
// again by the validation of its zero value or of the block around it.
func TestNoFollowOnErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string // every line of the formatted errors
	}{
		{"unset secret", `
gateway:
  identity_secret: 0123456789abcdef0123
  jwt:
    keys: [{kid: k, alg: HS256, secret: "${JWT}"}]
routes: [{name: a, upstream: "http://127.0.0.1:1", gateway: {}}]
`, []string{`x.yaml:5: gateway.jwt.keys[0].secret: environment variable JWT is not set`}},
		{"wrong type", `
edge: {max_header_bytes: lots}
`, []string{`x.yaml:2: edge.max_header_bytes: want a size such as "512MiB" or "10GB", got "lots"`}},
		{"unrelated errors stay", `
log: {level: loud}
admin: {token: "${TOKEN}"}
`, []string{
			`x.yaml:2: log.level: unknown level "loud" (want debug, info, warn, error)`,
			`x.yaml:3: admin.token: environment variable TOKEN is not set`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.src), "", env(nil))
			got := strings.Split(strings.TrimSpace(Format(err)), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
