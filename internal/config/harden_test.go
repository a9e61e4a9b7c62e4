package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lolBomb nests levels of ten aliases each under a merge key, so the
// document stands for 10^levels mappings.
func lolBomb(levels int) string {
	var b strings.Builder
	b.WriteString("edge:\n  <<: &l0 {listen: \":80\"}\n")
	for i := 1; i <= levels; i++ {
		refs := strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10)
		fmt.Fprintf(&b, "  read_timeout: &l%d {<<: [%s]}\n", i, strings.TrimSuffix(refs, ", "))
	}
	return b.String()
}

func TestHardenedParseErrors(t *testing.T) {
	cases := []errCase{
		{
			name: "second document refused",
			src:  "edge:\n  listen: :80\n---\nedge:\n  listen: :81\n",
			want: []string{`outpost.yaml:3: a second YAML document (after ---): the file must hold one`},
		},
		{
			name: "syntax error in a second document",
			src:  "edge:\n  listen: :80\n---\nedge: [\n",
			want: []string{`outpost.yaml:`},
		},
		{
			name: "alias bomb",
			src:  lolBomb(9),
			want: []string{`outpost.yaml:1: aliases expand to more than 100000 extra nodes`},
		},
		{
			name: "alias to itself",
			src:  "edge: &a\n  <<: *a\n",
			want: []string{`outpost.yaml:1: aliases expand`},
		},
		{
			name: "unknown key inside a merge",
			src:  "edge:\n  <<: {listen: \":80\", bogus: 1}\n",
			want: []string{`outpost.yaml:2: edge.bogus: unknown key "bogus"`},
		},
		{
			name: "unset variable inside a merge",
			src:  "edge:\n  <<: {listen: \"${LISTEN}\"}\n",
			want: []string{`outpost.yaml:2: edge.listen: environment variable LISTEN is not set`},
		},
		{
			name: "secret in a number field",
			src:  "redis:\n  addr: a:1\n  db: ${S}\n",
			env:  map[string]string{"S": "TOPSECRET"},
			want: []string{`outpost.yaml:3: redis.db: want a whole number, got "${S}"`},
			not:  []string{"TOPSECRET"},
		},
		{
			name: "secret in a duration field",
			src:  "edge:\n  idle_timeout: x${S}\n",
			env:  map[string]string{"S": "TOPSECRET"},
			want: []string{`outpost.yaml:2: edge.idle_timeout: want a duration such as "30s" or "5m", got "x${S}"`},
			not:  []string{"TOPSECRET"},
		},
		{
			name: "secret in an IP field",
			src:  "nodes:\n  - name: a\n    ipv4: ${S}\n",
			env:  map[string]string{"S": "TOP\"SECRET\nline"},
			want: []string{`outpost.yaml:3: nodes[0].ipv4:`},
			not:  []string{"SECRET"},
		},
		{
			name: "secret quoted by validation",
			src:  "edge:\n  listen: ${S}\n",
			env:  map[string]string{"S": "TOPSECRET"},
			want: []string{`outpost.yaml:2: edge.listen: want host:port, got "${S}"`},
			not:  []string{"TOPSECRET"},
		},
		{
			name: "edge listen port out of range",
			src:  "edge:\n  listen: \":99999\"\n",
			want: []string{`outpost.yaml:2: edge.listen: want host:port, got ":99999"`},
		},
		{
			name: "edge listen port not a number",
			src:  "edge:\n  listen: \"localhost:abc\"\n",
			want: []string{`outpost.yaml:2: edge.listen: want host:port, got "localhost:abc"`},
		},
		{
			name: "admin listen port out of range",
			src:  "admin:\n  listen: \"127.0.0.1:70000\"\n",
			want: []string{`outpost.yaml:2: admin.listen: want host:port, got "127.0.0.1:70000"`},
		},
		{
			name: "dns listen port negative",
			src:  "dns:\n  listen: [\"[::1]:-53\"]\n",
			want: []string{`outpost.yaml:2: dns.listen[0]: want host:port, got "[::1]:-53"`},
		},
		{
			name: "redis addr port out of range",
			src:  "redis:\n  addr: \"redis:65536\"\n",
			want: []string{`outpost.yaml:2: redis.addr: want host:port, got "redis:65536"`},
		},
		{
			name: "two nodes on one IPv4 address",
			src:  "nodes:\n  - {name: a, ipv4: 192.0.2.1}\n  - {name: b, ipv4: 192.0.2.1}\n",
			want: []string{`outpost.yaml:3: nodes[1].ipv4: 192.0.2.1 is also nodes[0] (a): each node needs its own address`},
		},
		{
			name: "two nodes on one IPv6 address",
			src:  "nodes:\n  - {name: a, ipv6: \"2001:db8::1\"}\n  - {name: b, ipv4: 192.0.2.2, ipv6: \"2001:db8::1\"}\n",
			want: []string{`outpost.yaml:3: nodes[1].ipv6: 2001:db8::1 is also nodes[0] (a)`},
		},
		{
			name: "two routes with the same host and path",
			src:  "routes:\n  - {name: a, hosts: [x.com, y.com], upstream: \"http://127.0.0.1:1\"}\n  - name: b\n    hosts: [z.com, Y.com]\n    upstream: \"http://127.0.0.1:2\"\n",
			want: []string{`outpost.yaml:4: routes[1].hosts[1]: host "y.com" with path_prefix "/" is already routes[0] (a): this route would never get it`},
		},
		{
			name: "two any-host routes on one path",
			src:  "routes:\n  - {name: a, path_prefix: /api, upstream: \"http://127.0.0.1:1\"}\n  - {name: b, path_prefix: /api, upstream: \"http://127.0.0.1:2\"}\n",
			want: []string{`outpost.yaml:3: routes[1].path_prefix: any host with path_prefix "/api" is already routes[0] (a)`},
		},
		{
			name: "zoned IPv6 node address",
			src:  "nodes:\n  - {name: a, ipv6: \"fe80::1%eth0\"}\n",
			want: []string{`outpost.yaml:2: nodes[0].ipv6: want an address without a zone, got fe80::1%eth0`},
		},
		{
			name: "negative redis db",
			src:  "redis:\n  addr: \"127.0.0.1:6379\"\n  db: -1\n",
			want: []string{`outpost.yaml:3: redis.db: must not be negative, got -1`},
		},
		{
			name: "notsent_lowat over 1GiB",
			src:  "edge:\n  notsent_lowat: 2GiB\n",
			want: []string{`outpost.yaml:2: edge.notsent_lowat: want 0 (the kernel's setting) up to 1GiB, got 2147483648`},
		},
		{
			name: "unquoted variable in a flow list",
			src:  "edge:\n  trusted_proxies: [${S}]\n",
			env:  map[string]string{"S": "10.0.0.0/8"},
			want: []string{`did not find expected ',' or ']' (line 2: inside [ ] or { }, quote a ${VAR}: "${VAR}")`},
		},
		{
			name: "file too large",
			src:  "edge:\n  listen: :80\n#" + strings.Repeat("x", MaxFileSize),
			want: []string{`outpost.yaml: file is larger than 8 MiB`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantParseErrors(t, tc.src, tc.env, tc.want, tc.not)
		})
	}
}

// An anchored value is expanded once, however many aliases use it: "$$"
// stays one "$".
func TestAliasExpandedOnce(t *testing.T) {
	src := "redis:\n  addr: a:1\n  password: &p \"/a$$$$b\"\ndata_dir: *p\n"
	cfg, err := Parse("outpost.yaml", []byte(src), "", env(nil))
	if err != nil {
		t.Fatal(Format(err))
	}
	if cfg.Redis.Password != "/a$$b" || cfg.DataDir != "/a$$b" {
		t.Errorf("password = %q, data_dir = %q, want /a$$b", cfg.Redis.Password, cfg.DataDir)
	}
}

func TestAliasMergeStillWorks(t *testing.T) {
	src := "edge:\n  <<: &e {listen: \"127.0.0.1:8080\", idle_timeout: 7s}\n  idle_timeout: 9s\n"
	cfg, err := Parse("outpost.yaml", []byte(src), "", env(nil))
	if err != nil {
		t.Fatal(Format(err))
	}
	if cfg.Edge.Listen != "127.0.0.1:8080" || cfg.Edge.IdleTimeout.D() != 9*time.Second {
		t.Errorf("merge: listen %q idle %v", cfg.Edge.Listen, cfg.Edge.IdleTimeout)
	}
}

// /dev/zero (or any endless or huge file) given as the config is refused
// after MaxFileSize, not read whole.
func TestLoadEndlessFile(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	// Read whole, /dev/zero would never end: the error says the read stopped.
	_, err := Load("/dev/zero", "")
	if err == nil || !strings.Contains(Format(err), "file is larger than 8 MiB") {
		t.Fatalf("Load(/dev/zero) = %v", err)
	}
	dir := t.TempDir()
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Load(dir) = %v", err)
	}
	p := filepath.Join(dir, "outpost.yaml")
	if err := os.WriteFile(p, []byte("edge:\n  listen: \"127.0.0.1:8080\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, ""); err != nil {
		t.Errorf("Load(valid) = %v", err)
	}
}

// A variable's value is one scalar: YAML syntax in it (newlines, "key:
// value", a flow mapping, another ${REF}) adds no keys and is not expanded
// again.
func TestExpansionInjectsNothing(t *testing.T) {
	src := "redis:\n  addr: \"127.0.0.1:6379\"\n  password: ${P}\ndata_dir: /x${D}\n"
	vars := map[string]string{"P": "a\nlog:\n  level: debug\n{admin: {token: x}}", "D": "${P}$$"}
	cfg, err := Parse("outpost.yaml", []byte(src), "", env(vars))
	if err != nil {
		t.Fatal(Format(err))
	}
	if cfg.Redis.Password != vars["P"] || cfg.DataDir != "/x${P}$$" {
		t.Errorf("password %q, data_dir %q", cfg.Redis.Password, cfg.DataDir)
	}
	if cfg.Log.Level != "info" || cfg.Admin.Token != "" {
		t.Errorf("value injected keys: log.level %q, admin.token %q", cfg.Log.Level, cfg.Admin.Token)
	}
}
