//go:build linux

// Command evproxy is NOT a proxy anyone should run: like bench/http/rawproxy
// it is a measuring stick for bench/http/passthrough.sh (CEILING=1), the
// least HTTP/1.1 pass-through an event loop written in Go can do —
// bodiless requests only, responses framed by Content-Length only, no
// timeouts, no validation, every error a close. Where rawproxy shows what
// a goroutine per connection costs, evproxy shows what one event loop per
// core (epoll, level-triggered, raw system calls, no goroutine switches)
// would: the ceiling of the structural change docs/lb.md names for the
// pass lane, measured instead of guessed.
//
// Each loop has its own listening socket (SO_REUSEPORT: the kernel spreads
// clients over the loops) and its own idle backend connections (LIFO, as
// Outpost's pool), picks backends round robin, and adds X-Forwarded-For
// and Via to each request head, as rawproxy --shared does.
package main

import (
	"bytes"
	"flag"
	"log"
	"net"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

type client struct {
	fd   int
	ip   []byte
	rbuf []byte
	n    int
	b    *backend // the backend connection serving its request; nil: none
}

type backend struct {
	fd     int
	pool   int
	rbuf   []byte
	n      int
	total  int // head + body length, once the head is in; 0: not yet
	client *client
}

type loop struct {
	ep      int
	ln      int
	addrs   []unix.SockaddrInet4
	idle    [][]*backend
	clients map[int]*client
	back    map[int]*backend
	rr      int
	req     []byte
	events  []unix.EpollEvent
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18094", "")
	b1 := flag.String("b1", "127.0.0.1:18082", "")
	b2 := flag.String("b2", "127.0.0.1:18083", "")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops (one OS thread each)")
	flag.Parse()
	laddr := sockaddr(*listen)
	addrs := []unix.SockaddrInet4{sockaddr(*b1), sockaddr(*b2)}
	for i := 0; i < *loops; i++ {
		l, err := newLoop(laddr, addrs)
		if err != nil {
			log.Fatal(err)
		}
		go l.run()
	}
	select {}
}

func sockaddr(hostport string) unix.SockaddrInet4 {
	a, err := net.ResolveTCPAddr("tcp4", hostport)
	if err != nil {
		log.Fatal(err)
	}
	var sa unix.SockaddrInet4
	copy(sa.Addr[:], a.IP.To4())
	sa.Port = a.Port
	return sa
}

func newLoop(laddr unix.SockaddrInet4, addrs []unix.SockaddrInet4) (*loop, error) {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err := unix.Bind(ln, &laddr); err != nil {
		return nil, err
	}
	if err := unix.Listen(ln, 1024); err != nil {
		return nil, err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &loop{ep: ep, ln: ln, addrs: addrs, idle: make([][]*backend, len(addrs)),
		clients: map[int]*client{}, back: map[int]*backend{}, events: make([]unix.EpollEvent, 128)}
	return l, l.watch(ln)
}

func (l *loop) watch(fd int) error {
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
}

func (l *loop) run() {
	runtime.LockOSThread()
	for {
		n, err := unix.EpollWait(l.ep, l.events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			log.Fatal(err)
		}
		for _, ev := range l.events[:n] {
			fd := int(ev.Fd)
			switch {
			case fd == l.ln:
				l.accept()
			case l.clients[fd] != nil:
				l.clientReadable(l.clients[fd])
			case l.back[fd] != nil:
				l.backendReadable(l.back[fd])
			}
		}
	}
}

func (l *loop) accept() {
	for {
		fd, sa, err := unix.Accept4(l.ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: no more
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		ip := []byte("127.0.0.1")
		if a, ok := sa.(*unix.SockaddrInet4); ok {
			ip = []byte(net.IP(a.Addr[:]).String())
		}
		c := &client{fd: fd, ip: ip, rbuf: make([]byte, 4096)}
		l.clients[fd] = c
		if l.watch(fd) != nil {
			l.closeClient(c)
		}
	}
}

func (l *loop) closeClient(c *client) {
	delete(l.clients, c.fd)
	unix.Close(c.fd)
	if b := c.b; b != nil {
		l.closeBackend(b)
	}
}

func (l *loop) closeBackend(b *backend) {
	delete(l.back, b.fd)
	unix.Close(b.fd)
	if b.client != nil {
		b.client.b = nil
	}
}

func (l *loop) clientReadable(c *client) {
	if c.b != nil {
		return // a request is out; wrk does not pipeline
	}
	m, err := unix.Read(c.fd, c.rbuf[c.n:])
	if err == unix.EAGAIN {
		return
	}
	if err != nil || m <= 0 {
		l.closeClient(c)
		return
	}
	c.n += m
	l.serve(c)
}

// serve sends the request c's buffer holds, once its head is whole.
func (l *loop) serve(c *client) {
	end := bytes.Index(c.rbuf[:c.n], []byte("\r\n\r\n"))
	if end < 0 {
		if c.n == len(c.rbuf) {
			l.closeClient(c)
		}
		return
	}
	head := c.rbuf[:end+2]
	l.req = append(l.req[:0], head...)
	l.req = append(l.req, "X-Forwarded-For: "...)
	l.req = append(l.req, c.ip...)
	l.req = append(l.req, "\r\nVia: 1.1 evproxy\r\n\r\n"...)
	c.n = copy(c.rbuf, c.rbuf[end+4:c.n])
	p := l.rr % len(l.addrs)
	l.rr++
	b := l.get(p)
	if b == nil {
		l.closeClient(c)
		return
	}
	if _, err := unix.Write(b.fd, l.req); err != nil {
		l.closeBackend(b)
		l.closeClient(c)
		return
	}
	c.b, b.client = b, c
}

// get takes an idle connection to backend p (LIFO), or dials one: a
// blocking connect, made only while the pool warms up.
func (l *loop) get(p int) *backend {
	if n := len(l.idle[p]); n > 0 {
		b := l.idle[p][n-1]
		l.idle[p] = l.idle[p][:n-1]
		return b
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if err := unix.Connect(fd, &l.addrs[p]); err != nil {
		unix.Close(fd)
		return nil
	}
	unix.SetNonblock(fd, true)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	b := &backend{fd: fd, pool: p, rbuf: make([]byte, 8192)}
	l.back[fd] = b
	if l.watch(fd) != nil {
		l.closeBackend(b)
		return nil
	}
	return b
}

func (l *loop) backendReadable(b *backend) {
	m, err := unix.Read(b.fd, b.rbuf[b.n:])
	if err == unix.EAGAIN {
		return
	}
	c := b.client
	if err != nil || m <= 0 || c == nil {
		l.closeBackend(b) // closed, or spoke while idle
		if c != nil {
			l.closeClient(c)
		}
		return
	}
	b.n += m
	if b.total == 0 {
		end := bytes.Index(b.rbuf[:b.n], []byte("\r\n\r\n"))
		if end < 0 {
			if b.n == len(b.rbuf) {
				l.closeBackend(b)
				l.closeClient(c)
			}
			return
		}
		cl := contentLength(b.rbuf[:end])
		if cl < 0 || end+4+cl > len(b.rbuf) {
			l.closeBackend(b)
			l.closeClient(c)
			return
		}
		b.total = end + 4 + cl
	}
	if b.n < b.total {
		return
	}
	if _, err := unix.Write(c.fd, b.rbuf[:b.total]); err != nil {
		l.closeBackend(b)
		l.closeClient(c)
		return
	}
	b.n, b.total, b.client, c.b = 0, 0, nil, nil
	l.idle[b.pool] = append(l.idle[b.pool], b)
	if c.n > 0 { // the next request came with the last
		l.serve(c)
	}
}

func contentLength(head []byte) int {
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		if len(line) > 15 && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
