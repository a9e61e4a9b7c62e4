package http2

import (
	"strconv"

	"golang.org/x/net/http2/hpack"
)

// headerBlock encodes response header fields as nginx does: a name by its
// HPACK static-table index when it has one, every value as a literal
// (Huffman-coded when shorter), and nothing ever added to the dynamic
// table. Responses carry fields that change every time (date, age, a
// request ID); indexing them made x/net's encoder search, add and evict
// table entries for each, a tenth of the CPU of a small HTTP/2 hit. The
// cost is a few dozen bytes per response, and an encoder with no state:
// the client's SETTINGS_HEADER_TABLE_SIZE never matters (RFC 7541 §4.2:
// only an encoder that uses the table signals its size).
type headerBlock struct{ b []byte }

func (h *headerBlock) reset() { h.b = h.b[:0] }

// status appends :status, indexed when the static table has it.
func (h *headerBlock) status(code int) {
	if i, ok := staticStatus[code]; ok {
		h.b = appendInt(h.b, 7, 0x80, i) // indexed field (§6.1)
		return
	}
	h.b = appendInt(h.b, 4, 0, 8) // literal without indexing, name :status
	h.b = appendString(h.b, strconv.Itoa(code))
}

// field appends a lower-case name and its value, literal without
// indexing (§6.2.2).
func (h *headerBlock) field(name, value string) {
	if i, ok := staticNames[name]; ok {
		h.b = appendInt(h.b, 4, 0, i)
	} else {
		h.b = append(h.b, 0)
		h.b = appendString(h.b, name)
	}
	h.b = appendString(h.b, value)
}

// appendInt encodes n with an N-bit prefix (§5.1); first holds the
// representation's pattern bits.
func appendInt(b []byte, prefix uint8, first byte, n uint64) []byte {
	max := uint64(1)<<prefix - 1
	if n < max {
		return append(b, first|byte(n))
	}
	b = append(b, first|byte(max))
	n -= max
	for n >= 128 {
		b = append(b, byte(n&0x7f)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// appendString encodes a string literal (§5.2), Huffman-coded when that
// is shorter.
func appendString(b []byte, s string) []byte {
	if n := hpack.HuffmanEncodeLength(s); n < uint64(len(s)) {
		b = appendInt(b, 7, 0x80, n)
		return hpack.AppendHuffmanString(b, s)
	}
	b = appendInt(b, 7, 0, uint64(len(s)))
	return append(b, s...)
}

var staticStatus = map[int]uint64{200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}

// staticNames maps each name of the static table (RFC 7541 Appendix A)
// to its first index.
var staticNames = func() map[string]uint64 {
	names := []string{
		":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme",
		":status", ":status", ":status", ":status", ":status", ":status", ":status",
		"accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept",
		"access-control-allow-origin", "age", "allow", "authorization", "cache-control",
		"content-disposition", "content-encoding", "content-language", "content-length",
		"content-location", "content-range", "content-type", "cookie", "date", "etag",
		"expect", "expires", "from", "host", "if-match", "if-modified-since",
		"if-none-match", "if-range", "if-unmodified-since", "last-modified", "link",
		"location", "max-forwards", "proxy-authenticate", "proxy-authorization", "range",
		"referer", "refresh", "retry-after", "server", "set-cookie",
		"strict-transport-security", "transfer-encoding", "user-agent", "vary", "via",
		"www-authenticate",
	}
	m := make(map[string]uint64, len(names))
	for i, n := range names {
		if _, ok := m[n]; !ok {
			m[n] = uint64(i + 1)
		}
	}
	return m
}()
