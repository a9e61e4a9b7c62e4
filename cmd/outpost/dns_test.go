package main

import (
	"io"
	"testing"
)

func TestParseNodeSpec(t *testing.T) {
	tests := []struct {
		spec    string
		ok      bool
		v6, lat string
	}{
		{"eu,203.0.113.10,50.11,8.68", true, "invalid IP", "50.11"},
		{"us,198.51.100.10,2001:db8::10,39.04,-77.49", true, "2001:db8::10", "39.04"},
		{"eu,203.0.113.10,50.11", false, "", ""},
		{"eu,not-an-ip,50,8", false, "", ""},
		{"eu,203.0.113.10,91,8", false, "", ""},
		{"eu,203.0.113.10,x,8", false, "", ""},
	}
	for _, tc := range tests {
		n, err := parseNodeSpec(tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v", tc.spec, err)
			continue
		}
		if tc.ok && (n.IPv6.String() != tc.v6 || n.Weight != 1) {
			t.Errorf("%q: %+v", tc.spec, n)
		}
	}
}

func TestDNSCommandUsage(t *testing.T) {
	if code := run([]string{"dns"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("no --zone: exit %d, want 2", code)
	}
	if code := run([]string{"dns", "--zone", "/nonexistent.zone", "--listen", "127.0.0.1:0"}, io.Discard, io.Discard); code != 1 {
		t.Fatalf("missing zone file: exit %d, want 1", code)
	}
	if code := run([]string{"dns", "--zone", "x.zone", "--node", "bad"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("bad --node: exit %d, want 2", code)
	}
}
