package main

import (
	"bytes"
	"testing"
)

// TestQuickModeFlagErrors runs the quick modes with bad flags: each problem
// is one line naming the flag the user typed, never the generated config's
// paths or line numbers, and the exit status is 2 (usage).
func TestQuickModeFlagErrors(t *testing.T) {
	const zone = "../../configs/example.com.zone"
	origin := "http://127.0.0.1:1"
	for _, tc := range []struct {
		name string
		args []string
		want string // the whole of stderr
	}{
		{"proxy origin scheme", []string{"proxy", "--origin", "ftp://x"},
			"outpost proxy: --origin: want an http:// or https:// URL, got \"ftp://x\"\n"},
		{"proxy second origin", []string{"proxy", "--origin", origin, "--origin", "x"},
			"outpost proxy: --origin: want an http:// or https:// URL, got \"x\"\n"},
		{"proxy policy", []string{"proxy", "--origin", origin, "--policy", "rr"},
			"outpost proxy: --policy: unknown policy \"rr\" (want round_robin, least_connections, ip_hash, consistent_hash, p2c)\n"},
		{"proxy cache size", []string{"proxy", "--origin", origin, "--cache-size", "10"},
			"outpost proxy: --cache-size: must be >= 1MiB, got 10 bytes\n"},
		{"proxy listen", []string{"proxy", "--origin", origin, "--listen", "bad"},
			"outpost proxy: --listen: want host:port, got \"bad\"\n"},
		{"proxy health path", []string{"proxy", "--origin", origin, "--health-path", "healthz"},
			"outpost proxy: --health-path: must start with \"/\", got \"healthz\"\n"},
		{"proxy token", []string{"proxy", "--origin", origin, "--admin", "127.0.0.1:0", "--token", "short"},
			"outpost proxy: --token: must be at least 16 characters\n"},
		{"dns listen", []string{"dns", "--zone", zone, "--listen", "bad"},
			"outpost dns: --listen: want host:port, got \"bad\"\n"},
		{"dns rrl, one line", []string{"dns", "--zone", zone, "--rrl", "-1"},
			"outpost dns: --rrl: must be >= 1, got -1\n"},
		{"dns answers", []string{"dns", "--zone", zone, "--steer", "www.example.com", "--steer", "example.com", "--node", "a,192.0.2.1,1,1", "--answers", "99"},
			"outpost dns: --answers: must be within [1, 16], got 99\n"},
		{"dns edns size", []string{"dns", "--zone", zone, "--edns-size", "100"},
			"outpost dns: --edns-size: must be within [512, 4096], got 100\n"},
		{"dns steer without node", []string{"dns", "--zone", zone, "--steer", "www.example.com"},
			"outpost dns: --steer and --node go together: the steered names are answered from the --node set\n"},
		{"dns node without steer", []string{"dns", "--zone", zone, "--node", "a,192.0.2.1,1,1"},
			"outpost dns: --steer and --node go together: the steered names are answered from the --node set\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := outpost(tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			_ = cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 2 || stderr.String() != tc.want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and:\n%s", code, stderr.String(), tc.want)
			}
		})
	}
}
