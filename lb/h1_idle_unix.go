//go:build unix

package lb

import (
	"net"
	"syscall"

	"github.com/outpost-edge/outpost/internal/rawsock"
)

// idleCheck returns a check of whether the backend sent anything (bytes,
// or the end of the stream) on c while it sat idle in the pool; it peeks
// without blocking and consumes nothing. It is built once per connection:
// the raw connection and the peek closure would otherwise be allocated on
// every reuse. nil: c cannot be checked.
func idleCheck(c net.Conn) func() bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var b [1]byte
	var errno syscall.Errno
	peek := func(fd uintptr) bool {
		_, errno = rawsock.Peek(fd, b[:])
		return true // never wait: EAGAIN is the answer "nothing"
	}
	return func() bool {
		errno = 0
		err := rc.Read(peek)
		// Data (n > 0) and EOF (n == 0) both leave errno 0.
		return err == nil && errno == 0
	}
}
