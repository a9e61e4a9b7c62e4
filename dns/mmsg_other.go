//go:build !linux

package dns

import (
	"errors"
	"net"
	"net/netip"
)

// mmsgBatch exists only on Linux; elsewhere every socket uses loop.
type mmsgBatch struct{}

func newMmsgBatch(*net.UDPConn, int, int) (*mmsgBatch, error) {
	return nil, errors.New("recvmmsg: Linux only")
}

func (*mmsgBatch) read() (int, error)                          { return 0, net.ErrClosed }
func (*mmsgBatch) datagram(int) ([]byte, bool, netip.AddrPort) { return nil, true, netip.AddrPort{} }
func (*mmsgBatch) queue(int, []byte)                           {}
func (*mmsgBatch) flush() error                                { return nil }
