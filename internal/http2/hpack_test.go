package http2

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// What headerBlock encodes, x/net's HPACK decoder reads back as written:
// static and non-static names, Huffman and raw values, lengths that need
// multi-byte integers, every status, and many blocks in a row on one
// decoder (nothing may touch its dynamic table).
func TestHeaderBlockDecodes(t *testing.T) {
	dec := hpack.NewDecoder(4096, nil)
	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		var hb headerBlock
		code := []int{200, 204, 206, 304, 400, 404, 500, 103, 201, 302, 429, 503, 999}[i%13]
		hb.status(code)
		want := []hpack.HeaderField{{Name: ":status", Value: fmt.Sprint(code)}}
		for j := 0; j < rnd.Intn(12); j++ {
			name := []string{"content-type", "age", "x-request-id", "cache-status", "www-authenticate", "x-" + strings.Repeat("n", rnd.Intn(200))}[rnd.Intn(6)]
			value := strings.Repeat(string(rune('!'+rnd.Intn(90))), rnd.Intn(300))
			if rnd.Intn(3) == 0 {
				value = "\x01\xff" + value // not shorter in Huffman
			}
			hb.field(name, value)
			want = append(want, hpack.HeaderField{Name: name, Value: value})
		}
		got, err := dec.DecodeFull(hb.b)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if len(got) != len(want) {
			t.Fatalf("block %d: %d fields, want %d", i, len(got), len(want))
		}
		for k := range got {
			if got[k].Name != want[k].Name || got[k].Value != want[k].Value {
				t.Fatalf("block %d field %d: %q=%q, want %q=%q", i, k, got[k].Name, got[k].Value, want[k].Name, want[k].Value)
			}
		}
	}
}
