package httpwire

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 27},
		{"GET / HTTP/1.1\r\nHost: a\r\n", 0},
		{"GET / HTTP/1.1\r", 0},
		{"GET / HTTP/1.1\nHost: a\n\n", -1},
		{"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", -1},
		{"\n", -1},
		{"", 0},
	} {
		if got := HeadEnd([]byte(tc.in), 0); got != tc.want {
			t.Errorf("HeadEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseFields(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want http.Header
		ok   bool
	}{
		{"host: a\r\nx-two: 1\r\nX-TWO: 2\r\n", http.Header{"Host": {"a"}, "X-Two": {"1", "2"}}, true},
		{"A-b-C:  v \t\r\nEmpty:\r\n", http.Header{"A-B-C": {"v"}, "Empty": {""}}, true},
		{"X_Under: 1\r\n", http.Header{"X_under": {"1"}}, true},
		{"Obs: \xff\r\n", http.Header{"Obs": {"\xff"}}, true},
		{"X : 1\r\n", nil, false},
		{" X: 1\r\n", nil, false},
		{"X: a\x00b\r\n", nil, false},
		{"X: a\x7fb\r\n", nil, false},
		{"NoColon\r\n", nil, false},
		{": empty name\r\n", nil, false},
	} {
		got, ok := ParseFields(tc.in)
		if ok != tc.ok || (ok && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("ParseFields(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		// AppendFields: the same fields, as a list in the order they
		// came, after what dst held.
		list, lok := AppendFields([]Field{{"Keep", "me"}}, tc.in)
		if lok != tc.ok {
			t.Errorf("AppendFields(%q) ok %v, want %v", tc.in, lok, tc.ok)
		} else if ok {
			h := http.Header{}
			for _, f := range list[1:] {
				h[f.Name] = append(h[f.Name], f.Value)
			}
			if list[0] != (Field{"Keep", "me"}) || !reflect.DeepEqual(h, got) {
				t.Errorf("AppendFields(%q) = %v; ParseFields %v", tc.in, list, got)
			}
		}
		if ok {
			// net/textproto reads the same fields.
			want, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\n" + tc.in + "\r\n")))
			if err != nil || !reflect.DeepEqual(http.Header(want.Header), withHost(got)) {
				t.Errorf("%q: net/http reads %v (%v)", tc.in, want.Header, err)
			}
		}
	}
}

// withHost is h as http.ReadRequest leaves it: Host out of the map.
func withHost(h http.Header) http.Header {
	c := h.Clone()
	delete(c, "Host")
	return c
}

// WriteField writes what net/http's rule makes of each value (trim the
// ends, line breaks to spaces), whether it takes the plain path or not.
func TestWriteField(t *testing.T) {
	for _, tc := range []struct{ v, want string }{
		{" a\r\nSet-Cookie: x \t", "a  Set-Cookie: x"},
		{"", ""},
		{"plain value", "plain value"},
		{"a\nb", "a b"},
		{"a\rb", "a b"},
		{"\t", ""},
		{" lead", "lead"},
		{"trail\n", "trail"},
		{"\r\n\r\n", ""},
		{"x", "x"},
		{"in\tside", "in\tside"},
	} {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		WriteField(bw, "X-A", tc.v)
		bw.Flush()
		if got := b.String(); got != "X-A: "+tc.want+"\r\n" {
			t.Errorf("%q: wrote %q", tc.v, got)
		}
	}
}

func TestSizedBody(t *testing.T) {
	b := &SizedBody{R: bufio.NewReader(strings.NewReader("hello world")), Left: 5}
	got, err := io.ReadAll(b)
	if string(got) != "hello" || err != nil {
		t.Fatalf("%q %v", got, err)
	}
	short := &SizedBody{R: bufio.NewReader(strings.NewReader("hi")), Left: 5}
	if _, err := io.ReadAll(short); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut short: %v", err)
	}
	cut := &SizedBody{R: bufio.NewReader(strings.NewReader("hello")), Left: 5}
	cut.Close()
	if _, err := cut.Read(make([]byte, 1)); err != ErrBodyClosed {
		t.Fatalf("after close: %v", err)
	}
}
