//go:build unix

package lb

import (
	"net"
	"syscall"
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
	var rerr error
	peek := func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait: EAGAIN is the answer "nothing"
	}
	return func() bool {
		rerr = nil
		err := rc.Read(peek)
		// Data (n > 0) and EOF (n == 0) both leave rerr nil.
		return err == nil && rerr == nil
	}
}
