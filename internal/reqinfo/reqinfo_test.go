package reqinfo

import (
	"maps"
	"strconv"
	"testing"
)

// TestFields checks Set, Get and Fields on both sides of the inline
// storage: overwrites, and keys past it.
func TestFields(t *testing.T) {
	var i Info
	want := map[string]string{}
	for n := range 2 * len(i.inline) {
		k := "k" + strconv.Itoa(n)
		i.Set(k, "a")
		want[k] = "a"
		for j := 0; j <= n; j += 2 {
			k := "k" + strconv.Itoa(j)
			i.Set(k, "b"+strconv.Itoa(n))
			want[k] = "b" + strconv.Itoa(n)
		}
		if got := i.Fields(); !maps.Equal(got, want) {
			t.Fatalf("after %d keys: Fields() = %v, want %v", n+1, got, want)
		}
		for k, v := range want {
			if got := i.Get(k); got != v {
				t.Fatalf("after %d keys: Get(%q) = %q, want %q", n+1, k, got, v)
			}
		}
	}
	if got := i.Get("missing"); got != "" {
		t.Errorf("Get(missing) = %q", got)
	}
	var nilInfo *Info
	nilInfo.Set("k", "v")
	if nilInfo.Get("k") != "" || nilInfo.Fields() != nil {
		t.Error("nil Info")
	}
}
