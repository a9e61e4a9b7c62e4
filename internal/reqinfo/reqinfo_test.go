package reqinfo

import (
	"context"
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

// TestContext checks that a bound Context answers as With's context does,
// and that children made over it end with its parent.
func TestContext(t *testing.T) {
	type other struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), other{}, "o"))
	info := &Info{ID: "x"}
	var c Context
	c.Bind(parent, info)
	var children []context.Context
	for _, ctx := range []context.Context{&c, With(parent, info)} {
		if From(ctx) != info || ctx.Value(other{}) != "o" || ctx.Done() != parent.Done() {
			t.Fatalf("%T: From = %p, other = %v", ctx, From(ctx), ctx.Value(other{}))
		}
		child, stop := context.WithCancelCause(ctx)
		defer stop(nil)
		if From(child) != info || child.Err() != nil {
			t.Fatalf("%T: child: From = %p, Err = %v", ctx, From(child), child.Err())
		}
		children = append(children, child)
	}
	if From(context.Background()) != nil {
		t.Error("From(Background) != nil")
	}
	cancel()
	if c.Err() != context.Canceled {
		t.Errorf("Err() = %v after the parent's cancel", c.Err())
	}
	for _, child := range children {
		<-child.Done()
	}
}
