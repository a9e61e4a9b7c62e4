package rawsock

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// maxRW is the most one read or write asks of the kernel, as in
// internal/poll: larger requests are split (a stream may return less).
const maxRW = 1 << 30

// Conn is a *net.TCPConn whose Read and Write (and WriteBuffers) make raw
// system calls; see the package comment.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	// A Read's and a Write's arguments and results, for the closures
	// RawConn calls; made once so that a call allocates nothing. Reads
	// run one at a time, as do writes (rmu, wmu), but a read and a write
	// may run at once.
	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	wiov    [2]syscall.Iovec
	wbufs   [2][]byte
	wn      int64
	werrno  syscall.Errno
	wshort  bool // a write took nothing and said nothing
	writeFn func(fd uintptr) bool
}

// Supported reports whether this system has Conns (Linux); elsewhere Wrap
// returns its argument.
const Supported = true

// Wrap returns c as a Conn when c is a *net.TCPConn, and c itself
// otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &Conn{TCPConn: tc, rc: rc}
	r.readFn = r.read
	r.writeFn = r.write
	return r
}

// read is one attempt at the pending Read; false: nothing to read yet,
// wait for the socket to become readable.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = int(n), e
		return true
	}
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write sends what is left of the pending Write or WriteBuffers; false:
// the socket's buffer is full, wait for room.
func (c *Conn) write(fd uintptr) bool {
	for {
		iov := c.wiov[:0]
		for i := range c.wbufs {
			if b := c.wbufs[i]; len(b) > 0 {
				if len(b) > maxRW {
					b = b[:maxRW]
				}
				iov = append(iov, syscall.Iovec{Base: &b[0]})
				iov[len(iov)-1].SetLen(len(b))
			}
		}
		if len(iov) == 0 {
			return true
		}
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
		if n == 0 {
			// Not for a socket with room; as internal/poll, never loop.
			c.wshort = true
			return true
		}
		c.wn += int64(n)
		for i := range c.wbufs {
			k := min(int(n), len(c.wbufs[i]))
			c.wbufs[i] = c.wbufs[i][k:]
			n -= uintptr(k)
		}
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.WriteBuffers(p, nil)
	return int(n), err
}

// WriteBuffers writes a and then b in as few system calls as the socket
// takes (one writev when it has room): a response's head and body, say,
// which written one after the other would wake the peer twice. It returns
// when all is written or on the first error.
func (c *Conn) WriteBuffers(a, b []byte) (int64, error) {
	if len(a)+len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wbufs, c.wn, c.werrno, c.wshort = [2][]byte{a, b}, 0, 0, false
	err := c.rc.Write(c.writeFn)
	n, errno, short := c.wn, c.werrno, c.wshort
	c.wbufs = [2][]byte{}
	c.wiov = [2]syscall.Iovec{}
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	case short:
		return n, c.opError("write", io.ErrUnexpectedEOF)
	}
	return n, nil
}

// opError is err as the net package reports a failed Read or Write: an
// *net.OpError naming the operation and both addresses. RawConn's own
// errors (a deadline, a closed connection) come as such already, named
// for the raw operation.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Peek receives into b without consuming and without waiting
// (MSG_PEEK|MSG_DONTWAIT) from the socket fd, as a raw system call: a
// pool's check that an idle connection holds nothing. EAGAIN: nothing
// there; n == 0 and no error: the peer closed.
func Peek(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, syscall.EINVAL
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return int(n), e
}
