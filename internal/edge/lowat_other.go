//go:build !linux

package edge

import "net"

const lowatSupported = false

func setNotsentLowat(net.Conn, int) {}
