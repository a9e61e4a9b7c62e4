package cdn

import (
	"bytes"
	"os"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestConfigGolden decodes testdata/cdn/config.yaml strictly (unknown keys
// are errors, as in the node's loader) and checks the values and defaults.
func TestConfigGolden(t *testing.T) {
	data, err := os.ReadFile("../testdata/cdn/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cache Config      `yaml:"cache"`
		Route RouteConfig `yaml:"route"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	c, rc := doc.Cache, doc.Route
	c.SetDefaults()
	rc.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"max_size", c.MaxSize.Int64(), int64(10 << 30)},
		{"max_object_size", c.MaxObjectSize.Int64(), int64(2 << 30)},
		{"memory_bodies", c.MemoryBodies.Int64(), int64(128 << 20)},
		{"grace", c.Grace.D(), 2 * time.Hour},
		{"coalesce_wait", c.CoalesceWait.D(), 5 * time.Second},
		{"range_fetch_limit", c.RangeFetchLimit.Int64(), int64(32 << 20)},
		{"compression.encodings", len(c.Compression.Encodings), 2},
		{"compression.level", c.Compression.Level, 6},
		{"route.default_ttl", rc.DefaultTTL.D(), 30 * time.Second},
		{"rule0 default (long)", rc.TTLRules[0].Default.D(), 24 * time.Hour},
		{"rule0 max (long)", rc.TTLRules[0].Max.D(), 7 * 24 * time.Hour},
		{"rule1 max (short)", rc.TTLRules[1].Max.D(), time.Minute},
		{"rule2 min", rc.TTLRules[2].Min.D(), time.Hour},
		{"rule3 override", rc.TTLRules[3].Override.D(), 10 * time.Minute},
		{"rule3 override_private", rc.TTLRules[3].OverridePrivate, true},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	// An unknown key is an error.
	bad := yaml.NewDecoder(bytes.NewReader([]byte("cache:\n  max_szie: 1GiB\n")))
	bad.KnownFields(true)
	if err := bad.Decode(&doc); err == nil {
		t.Error("unknown key accepted")
	}
	// grace: 0s disables grace (nil means default).
	var g struct {
		Cache Config `yaml:"cache"`
	}
	if err := yaml.Unmarshal([]byte("cache:\n  grace: 0s\n  memory_bodies: \"0\"\n"), &g); err != nil {
		t.Fatal(err)
	}
	g.Cache.SetDefaults()
	if g.Cache.Grace.D() != 0 || g.Cache.MemoryBodies.Int64() != 0 {
		t.Errorf("explicit zeros overridden: grace %v memory %v", g.Cache.Grace.D(), g.Cache.MemoryBodies.Int64())
	}
}
