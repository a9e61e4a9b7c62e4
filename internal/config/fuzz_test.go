package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse feeds Parse arbitrary files (seeded with the shipped configs
// and a few hostile shapes): it must not panic, and must answer quickly.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(configsDir, "*.yaml"))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"edge: &a\n  <<: *a\n",
		lolBomb(3),
		"a: 1\n---\nb: 2\n",
		"routes:\n  - name: r\n    upstream: ${U:-http://127.0.0.1:1}\n    pool: $${x}\n",
		"pools:\n  p: ~\nroutes: [{name: r, pool: p}]\n",
		"dns:\n  zones: [{name: example.com, records: [{name: www, type: A, value: ${S}}]}]\n",
	} {
		f.Add([]byte(s))
	}
	lookup := env(map[string]string{"S": "secret-value", "ADMIN_TOKEN": "0123456789abcdef-token",
		"OUTPOST_ADMIN_TOKEN": "0123456789abcdef-token", "U": "http://127.0.0.1:2"})
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang would otherwise stall the fuzzer without a report.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("Parse hangs on %q", data)) })
		defer watchdog.Stop()
		cfg, err := Parse("fuzz.yaml", data, "", lookup)
		if err != nil {
			_ = Format(err)
		} else if cfg == nil {
			t.Fatal("nil config without an error")
		}
	})
}
