//go:build linux

package cluster

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// blackHole returns a loopback address whose connects hang, as a peer
// behind a firewall that drops packets does: a listener with a backlog of
// zero whose accept queue is already full, so the kernel drops new SYNs.
func blackHole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue (nobody accepts), until a connect hangs.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the kernel kept accepting connections past a full backlog")
	return ""
}

// TestBlackHoledPeerQueuedAfterConnectTimeout: a peer that drops packets
// fails at the connect bound (an i/o timeout while dialing), not at the
// whole request's timeout, and the operation is queued for it.
func TestBlackHoledPeerQueuedAfterConnectTimeout(t *testing.T) {
	addr := blackHole(t)
	f, err := NewFanout("self", []Peer{{"dark", "http://" + addr}}, "tok", filepath.Join(t.TempDir(), "q.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := f.Send(context.Background(), "/v1/purge", []byte(`{"all":true}`))["dark"]
	if !res.Queued || !strings.Contains(res.Error, "dial tcp") || !strings.Contains(res.Error, "i/o timeout") {
		t.Fatalf("result %+v: want a dial timeout, queued", res)
	}
}
