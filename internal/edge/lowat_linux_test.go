package edge

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// The option reaches every accepted connection; 0 leaves the listener
// (and the kernel's setting) alone.
func TestNotsentLowat(t *testing.T) {
	for _, n := range []int{0, 16 << 10, 1 << 20} {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ln := NotsentLowat(raw, n)
		if n == 0 {
			if ln != raw {
				t.Errorf("0 wrapped the listener")
			}
			continue
		}
		for range 2 {
			d, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rc, err := c.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			got, gerr := 0, error(nil)
			rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) })
			if gerr != nil || got != n {
				t.Errorf("notsent_lowat %d: the accepted connection has %d (%v)", n, got, gerr)
			}
		}
	}
}
