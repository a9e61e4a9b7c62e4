//go:build !linux

package dns

import "net"

// listenUDP opens one UDP socket on addr.
func listenUDP(addr string) ([]net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	return []net.PacketConn{pc}, nil
}
