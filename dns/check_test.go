package dns

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/units"
)

// TestCheck runs Check on a serving server with a runtime record, over
// configs that break one thing each. Check must report what Reload reports
// for the same config (seen on a twin server) and change nothing: the
// served answer and serial stay.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	zone := filepath.Join(dir, "example.test.zone")
	const soa = "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n"
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(zone, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := soa + "www IN A 192.0.2.1\n"
	runtime := mustRR(t, "extra.example.test. 60 IN A 192.0.2.9")
	// serve starts a server on the good zone with the runtime record.
	serve := func(t *testing.T) (*Server, string) {
		t.Helper()
		write(good)
		s, addr := startServer(t, testConfig(ZoneConfig{File: zone}), nil, Options{})
		if err := s.AddRecord(runtime); err != nil {
			t.Fatal(err)
		}
		return s, addr
	}
	for _, tc := range []struct {
		name string
		zone string // file content Check reads
		edit func(*Config)
		want string // "" for no error
	}{
		{name: "changed zone", zone: soa + "www IN A 192.0.2.2\n"},
		{name: "unparsable zone file", zone: soa + "www IN A 192.0.2.x\n", want: "zones[0]: " + zone + ":4: "},
		{name: "missing zone file", zone: good, edit: func(c *Config) { c.Zones[0].File = filepath.Join(dir, "nope.zone") },
			want: "zones[0]: " + filepath.Join(dir, "nope.zone") + ": open "},
		{name: "file clashes with a runtime record", zone: good + "extra IN CNAME www\n",
			want: "zone example.test.: extra.example.test. has a CNAME and other data"},
		{name: "bad config record", zone: good, edit: func(c *Config) { c.Zones[0].Records = []string{"mail IN MX nope"} },
			want: "zones[0]: records[0]: "},
		{name: "steered name outside the zones", zone: good, edit: func(c *Config) {
			c.Steered = []SteeredName{{Name: "www.elsewhere.test", Answers: 1, TTL: units.Duration(time.Minute)}}
		}, want: "steered name www.elsewhere.test. is not inside any served zone"},
		{name: "unusable TSIG key", zone: good, edit: func(c *Config) {
			c.Transfer.Keys = []TSIGKey{{Name: "k1", Algorithm: "hmac-sha256", Secret: "not base64!"}}
		}, want: "unusable TSIG keys: k1"},
		{name: "missing geo database", zone: good, edit: func(c *Config) { c.Geo.Database = filepath.Join(dir, "nope.mmdb") },
			want: "geo database " + filepath.Join(dir, "nope.mmdb")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := serve(t)
			twin, _ := serve(t)
			serial, _ := s.Serial("example.test")
			write(tc.zone)
			cfg := testConfig(ZoneConfig{File: zone})
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			checkErr := s.Check(cfg, nil)
			switch {
			case tc.want == "" && checkErr != nil:
				t.Fatalf("Check: %v", checkErr)
			case tc.want != "" && (checkErr == nil || !strings.Contains(checkErr.Error(), tc.want)):
				t.Fatalf("Check = %v, want an error with %q", checkErr, tc.want)
			}
			if reloadErr := twin.Reload(cfg, nil); errString(reloadErr) != errString(checkErr) {
				t.Errorf("Check says %q, Reload says %q", errString(checkErr), errString(reloadErr))
			}
			r := exchange(t, addr, "udp", newQuery("www.example.test.", mdns.TypeA))
			if got := rrStrings(r.Answer); !slices.Equal(got, want(t, []string{"www.example.test. 300 IN A 192.0.2.1"})) {
				t.Errorf("after Check, www answers %q", got)
			}
			if got, _ := s.Serial("example.test"); got != serial {
				t.Errorf("after Check, serial %d, want %d", got, serial)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
