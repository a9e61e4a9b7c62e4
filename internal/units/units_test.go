package units

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"0": 0, "4096": 4096, "64k": 64 << 10, "512MiB": 512 << 20, "10GB": 10e9, "1 GiB": 1 << 30, "2kb": 2000, "7B": 7,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "ten", "1.5GB", "12XB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s"), &v); err != nil || v.D.D().Seconds() != 90 {
		t.Errorf("1m30s: %v %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 0"), &v); err != nil || v.D != 0 {
		t.Errorf("0: %v %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 30"), &v); err == nil {
		t.Error("a bare number was accepted as a duration")
	}
}

func TestValidHostPort(t *testing.T) {
	for in, want := range map[string]bool{
		":80": true, ":0": true, "[::1]:53": true, "127.0.0.1:65535": true, "example.com:443": true,
		":65536": false, ":99999": false, "[::1]:-53": false, "host:abc": false, ":+80": false,
		"nope": false, ":": false, "::1:53": false, "": false,
	} {
		if got := ValidHostPort(in); got != want {
			t.Errorf("ValidHostPort(%q) = %v, want %v", in, got, want)
		}
	}
}
