package node

import (
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/outpost-edge/outpost/internal/rawsock"
	"golang.org/x/sys/unix"
)

// edge.notsent_lowat reaches the connections the edge accepts, through
// the connection limit (and, on plain HTTP, the sendfile-off copy), on
// the plain and the TLS listeners alike; 0 leaves the kernel's setting.
func TestNotsentLowatListeners(t *testing.T) {
	for _, c := range []struct {
		yaml     string
		sendfile bool
		want     int
	}{
		{"", true, 16 << 10}, // the default
		{"notsent_lowat: 1MiB", false, 1 << 20},
		{"notsent_lowat: 0", true, -1},
	} {
		n, _ := startNode(t, fmt.Sprintf("node: test\ndata_dir: %s\nedge: {listen: 127.0.0.1:0, sendfile: %v, %s}\nroutes:\n  - {name: app, upstream: http://127.0.0.1:1}\n",
			t.TempDir(), c.sendfile, c.yaml))
		cfg := &n.Config().Edge
		for name, wrap := range map[string]func(net.Listener) net.Listener{
			"plain": func(ln net.Listener) net.Listener { return n.plainListener(ln, cfg) },
			"tls":   func(ln net.Listener) net.Listener { return n.clientListener(ln, cfg) },
		} {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			d, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conn, err := wrap(raw).Accept()
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if want < 0 {
				want = kernelLowat(t)
			}
			if got := lowatOf(t, conn); got != want {
				t.Errorf("%q, %s listener: TCP_NOTSENT_LOWAT %d, want %d", c.yaml, name, got, want)
			}
			if _, ok := innermost(conn).(*rawsock.Conn); !ok {
				t.Errorf("%q, %s listener: a %T, want reads and writes by raw system calls (*rawsock.Conn)", c.yaml, name, innermost(conn))
			}
			conn.Close()
			d.Close()
			raw.Close()
		}
	}
}

// innermost is the connection c wraps (through NetConn methods).
func innermost(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}

// lowatOf reads TCP_NOTSENT_LOWAT of the TCP connection c wraps.
func lowatOf(t *testing.T, c net.Conn) int {
	t.Helper()
	tc, ok := innermost(c).(syscall.Conn)
	if !ok {
		t.Fatalf("%T does not wrap a TCP connection", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v, gerr := 0, error(nil)
	rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// kernelLowat is what a connection accepted without the option reads.
func kernelLowat(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return lowatOf(t, c)
}
