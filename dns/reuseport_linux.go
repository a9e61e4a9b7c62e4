package dns

import (
	"context"
	"net"
	"runtime"
	"syscall"
)

// soReusePort is SO_REUSEPORT on Linux (asm-generic/socket.h); the syscall
// package does not export it.
const soReusePort = 0xf

// listenUDP opens one UDP socket per CPU on addr with SO_REUSEPORT, as Knot
// and BIND do: the kernel spreads datagrams over the sockets, so workers
// don't contend for one socket's lock. It falls back to one socket.
func listenUDP(addr string) ([]net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	first, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		// No SO_REUSEPORT (old kernel, sandbox): a plain socket.
		pc, perr := net.ListenPacket("udp", addr)
		if perr != nil {
			return nil, perr
		}
		return []net.PacketConn{pc}, nil
	}
	pcs := []net.PacketConn{first}
	// Bind the others to the port the first one got (addr may say :0).
	actual := first.LocalAddr().String()
	for i := 1; i < runtime.GOMAXPROCS(0); i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", actual)
		if err != nil {
			break // one socket is enough to serve
		}
		pcs = append(pcs, pc)
	}
	return pcs, nil
}
