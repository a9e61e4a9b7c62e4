package config

import "testing"

// errCase is one input whose errors must contain want and none of not.
type errCase struct {
	name string
	src  string
	env  map[string]string
	want []string
	not  []string
}

func TestAuditErrors(t *testing.T) {
	cases := []errCase{
		{
			name: "trusted proxy not a CIDR",
			src:  "edge:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - nonsense\n",
			want: []string{`outpost.yaml:4: edge.trusted_proxies[1]:`},
		},
		{
			name: "short token never printed",
			src:  "admin:\n  token: ${T}\n",
			env:  map[string]string{"T": "shortsecret"},
			want: []string{`outpost.yaml:2: admin.token: must be at least 16 characters`},
			not:  []string{"shortsecret"},
		},
		{
			name: "token with surrounding whitespace can never match",
			src:  "admin:\n  token: ${T}\n",
			env:  map[string]string{"T": "0123456789abcdef0123\n"},
			want: []string{`outpost.yaml:2: admin.token:`},
			not:  []string{"0123456789abcdef0123"},
		},
		{
			name: "edge listen",
			src:  "edge:\n  listen: nope\n",
			want: []string{`outpost.yaml:2: edge.listen: want host:port, got "nope"`},
		},
		{
			name: "negative timeout",
			src:  "edge:\n  shutdown_timeout: -1s\n",
			want: []string{`outpost.yaml:2: edge.shutdown_timeout: must not be negative`},
		},
		{
			name: "small max header bytes",
			src:  "edge:\n  max_header_bytes: 512\n",
			want: []string{`outpost.yaml:2: edge.max_header_bytes: must be at least 1KiB`},
		},
		{
			name: "bad route host",
			src:  "routes:\n  - name: r\n    upstream: http://127.0.0.1:1\n    hosts: [\"a.*.com\"]\n",
			want: []string{`outpost.yaml:4: routes[0].hosts[0]: want a host name or "*.domain", got "a.*.com"`},
		},
		{
			name: "duplicate route",
			src:  "routes:\n  - {name: r, upstream: http://127.0.0.1:1}\n  - {name: r, upstream: http://127.0.0.1:2}\n",
			want: []string{`outpost.yaml:3: routes[1].name: duplicate route name "r"`},
		},
		{
			name: "upstream without scheme",
			src:  "routes:\n  - name: r\n    upstream: 127.0.0.1:8080\n",
			want: []string{`outpost.yaml:3: routes[0].upstream: want an http(s) URL, got "127.0.0.1:8080"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantParseErrors(t, tc.src, tc.env, tc.want, tc.not) })
	}
}
