package edge

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// SendfileListener wraps a TCP listener so that file bodies (cache hits)
// reach each connection through sendfile(2) issued as a raw system call.
//
// Why: net's own sendfile goes through syscall.Syscall, which tells the
// scheduler the goroutine may block. A sendfile into a loopback or fast
// socket runs long enough (the receiver's TCP work happens in the sender's
// call) that the runtime's sysmon takes the processor away on every call
// and hands it to another thread; serving 10 MiB hits, that hand-off was
// most of Outpost's extra CPU per byte against nginx (see docs/cache.md).
// The socket is non-blocking, so the call returns when its buffer is full;
// each call is also capped at rawSendfileChunk, which bounds how long it
// can hold the processor when the file is not in the page cache.
func SendfileListener(ln net.Listener) net.Listener {
	if _, ok := ln.(*net.TCPListener); !ok {
		return ln
	}
	return sendfileListener{ln}
}

type sendfileListener struct{ net.Listener }

func (l sendfileListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		return &sendfileConn{tc}, nil
	}
	return c, err
}

// sendfileConn is a *net.TCPConn with its own ReadFrom for files.
type sendfileConn struct{ *net.TCPConn }

const rawSendfileChunk = 1 << 20

// rawSendfiles counts bodies sent by the raw path (tests check it is taken).
var rawSendfiles atomic.Int64

// fileSource is an *os.File, or a wrapper of one that keeps its methods
// (io.Copy hands ReadFrom os's fileWithoutWriteTo).
type fileSource interface {
	io.Reader
	io.Seeker
	Stat() (os.FileInfo, error)
	SyscallConn() (syscall.RawConn, error)
}

func (c *sendfileConn) ReadFrom(r io.Reader) (int64, error) {
	var f fileSource
	remain := int64(-1) // to EOF
	switch s := r.(type) {
	case fileSource:
		f = s
	case *io.LimitedReader:
		if lf, ok := s.R.(fileSource); ok {
			f, remain = lf, s.N
			defer func() { s.N = remain }()
		}
	}
	if f == nil {
		return c.TCPConn.ReadFrom(r)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return c.TCPConn.ReadFrom(r)
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return c.TCPConn.ReadFrom(r)
	}
	fc, err := f.SyscallConn()
	if err != nil {
		return c.TCPConn.ReadFrom(r)
	}
	var srcFD int
	if err := fc.Control(func(fd uintptr) { srcFD = int(fd) }); err != nil {
		return c.TCPConn.ReadFrom(r)
	}
	rc, err := c.TCPConn.SyscallConn()
	if err != nil {
		return c.TCPConn.ReadFrom(r)
	}
	rawSendfiles.Add(1)
	start := off
	var serr error
	werr := rc.Write(func(fd uintptr) bool {
		for remain != 0 {
			n := int64(rawSendfileChunk)
			if remain > 0 && remain < n {
				n = remain
			}
			// The file descriptor stays open: f is held by the caller
			// for the whole ReadFrom.
			w, _, e := syscall.RawSyscall6(syscall.SYS_SENDFILE, fd, uintptr(srcFD),
				uintptr(unsafe.Pointer(&off)), uintptr(n), 0, 0)
			switch {
			case e == syscall.EAGAIN:
				return false // wait until the socket drains
			case e == syscall.EINTR:
				continue
			case e != 0:
				serr = os.NewSyscallError("sendfile", e)
				return true
			case w == 0:
				return true // end of file
			}
			if remain > 0 {
				remain -= int64(w)
			}
		}
		return true
	})
	written := off - start
	if _, err := f.Seek(off, io.SeekStart); err != nil && serr == nil {
		serr = err
	}
	if serr == nil {
		serr = werr
	}
	if serr != nil {
		serr = &net.OpError{Op: "sendfile", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: serr}
	}
	return written, serr
}
