package edge

import "net"

// NotsentLowat wraps an edge listener so that each accepted TCP
// connection keeps at most n bytes queued in the kernel beyond what TCP
// has sent (TCP_NOTSENT_LOWAT; edge.notsent_lowat). Without it a large
// body fills the connection's whole send buffer (up to tcp_wmem's 4 MiB
// by default) at once: kernel memory per slow client, and, for HTTP/2,
// control frames and other streams queued behind it. With it the server
// writes as the connection drains — in-flight data is still TCP's to
// size — as HAProxy does (at tune.bufsize) and as Cloudflare sets it
// system-wide. n <= 0, and systems without the option, leave ln as it is.
func NotsentLowat(ln net.Listener, n int) net.Listener {
	if n <= 0 || !lowatSupported {
		return ln
	}
	return lowatListener{ln, n}
}

type lowatListener struct {
	net.Listener
	n int
}

// Accept sets the option on the connection; one that cannot take it (not
// TCP, or already closed) is served without it.
func (l lowatListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		setNotsentLowat(c, l.n)
	}
	return c, err
}
