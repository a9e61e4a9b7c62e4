//go:build !linux

package edge

import "net"

// SendfileListener returns ln: the raw sendfile path is Linux only, and
// elsewhere net's own sendfile (or copy) serves file bodies.
func SendfileListener(ln net.Listener) net.Listener { return ln }
