package rawsock

import "net"

// Listener wraps ln so that the TCP connections it accepts are Conns.
func Listener(ln net.Listener) net.Listener {
	if !Supported {
		return ln
	}
	return listener{ln}
}

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
