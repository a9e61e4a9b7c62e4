package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair is a connected TCP pair on loopback: a Conn and the plain peer.
func pair(t testing.TB) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := Listener(ln).Accept()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := a.(*Conn)
	if !ok {
		t.Fatalf("Listener accepted a %T, want *Conn", a)
	}
	t.Cleanup(func() { c.Close(); d.Close() })
	return c, d.(*net.TCPConn)
}

// pattern is n bytes in which a shifted or lost byte shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// Bytes go both ways whole and in order, with writes larger than the
// socket's buffers (so a write waits for room, and a read for data, in
// the poller) and reads and writes running at once.
func TestReadWrite(t *testing.T) {
	c, d := pair(t)
	const size = 16 << 20
	want := pattern(size)
	var wg sync.WaitGroup
	var toPeer, fromPeer []byte
	var errs [3]error
	wg.Add(3)
	go func() { // the Conn writes, in pieces of odd sizes
		defer wg.Done()
		b := want
		for i := 0; len(b) > 0; i++ {
			n := min(len(b), 1+i*7919%(3<<20))
			m, err := c.Write(b[:n])
			if err != nil || m != n {
				errs[0] = errors.Join(err, errors.New("short write"))
				return
			}
			b = b[n:]
		}
	}()
	go func() { // the peer reads that
		defer wg.Done()
		toPeer, errs[1] = io.ReadAll(io.LimitReader(d, size))
	}()
	go func() { // and the Conn reads what the peer writes
		defer wg.Done()
		fromPeer, errs[2] = io.ReadAll(io.LimitReader(c, size))
	}()
	if _, err := d.Write(want); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(toPeer, want) || !bytes.Equal(fromPeer, want) {
		t.Fatalf("received %d and %d bytes, not the %d sent", len(toPeer), len(fromPeer), size)
	}
}

// WriteBuffers sends a then b, also when the socket takes them in several
// pieces that split either.
func TestWriteBuffers(t *testing.T) {
	c, d := pair(t)
	for _, tc := range []struct{ a, b int }{{0, 0}, {10, 0}, {0, 10}, {100, 4 << 20}, {4 << 20, 100}, {3 << 20, 5 << 20}} {
		all := pattern(tc.a + tc.b)
		done := make(chan []byte)
		go func() {
			got, _ := io.ReadAll(io.LimitReader(d, int64(len(all))))
			done <- got
		}()
		n, err := c.WriteBuffers(all[:tc.a], all[tc.a:])
		if err != nil || n != int64(len(all)) {
			t.Fatalf("%d+%d: wrote %d, %v", tc.a, tc.b, n, err)
		}
		if got := <-done; !bytes.Equal(got, all) {
			t.Fatalf("%d+%d: peer got %d bytes, not the %d written in order", tc.a, tc.b, len(got), len(all))
		}
	}
}

// Errors read as the net package's: a deadline is a timeout, the peer's
// close an io.EOF, a reset an *net.OpError with the system call's error,
// a Close during a read net.ErrClosed.
func TestErrors(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		c, _ := pair(t)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past the deadline: %v, want a timeout", err)
		}
		if oe, ok := err.(*net.OpError); !ok || oe.Op != "read" {
			t.Fatalf("%#v, want an *net.OpError for read", err)
		}
		big := make([]byte, 64<<20) // more than the buffers on both sides hold
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Write(big); !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == len(big) {
			t.Fatalf("write past the deadline: %d bytes, %v; want some written, then a timeout", n, err)
		}
	})
	t.Run("eof", func(t *testing.T) {
		c, d := pair(t)
		d.Write([]byte("ab"))
		d.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "ab" {
			t.Fatalf("read %q, %v; want \"ab\" then EOF", got, err)
		}
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("read after EOF: %d, %v", n, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		c, d := pair(t)
		d.SetLinger(0)
		d.Close() // an RST
		var err error
		for range 100 { // the RST may take a moment to land
			if _, err = c.Read(make([]byte, 1)); err != nil {
				break
			}
		}
		var oe *net.OpError
		if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" || oe.Addr == nil {
			t.Fatalf("read after a reset: %#v, want an *net.OpError for read with ECONNRESET", err)
		}
		_, err = c.Write([]byte("x"))
		if err == nil {
			_, err = c.Write([]byte("x"))
		}
		if !errors.As(err, &oe) || oe.Op != "write" {
			t.Fatalf("write after a reset: %v, want an *net.OpError for write", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c, _ := pair(t)
		go func() { time.Sleep(20 * time.Millisecond); c.Close() }()
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read through Close: %v, want net.ErrClosed", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after Close: %v, want net.ErrClosed", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		c, _ := pair(t)
		if n, err := c.Read(nil); n != 0 || err != nil {
			t.Fatalf("empty read: %d, %v", n, err)
		}
		if n, err := c.Write(nil); n != 0 || err != nil {
			t.Fatalf("empty write: %d, %v", n, err)
		}
	})
}

// What a Conn does not override is the *net.TCPConn's: sendfile through
// ReadFrom, CloseWrite, options.
func TestPromoted(t *testing.T) {
	c, d := pair(t)
	f, err := os.CreateTemp(t.TempDir(), "body")
	if err != nil {
		t.Fatal(err)
	}
	want := pattern(1 << 20)
	f.Write(want)
	f.Seek(0, io.SeekStart)
	if n, err := io.Copy(c, f); err != nil || n != int64(len(want)) {
		t.Fatalf("io.Copy from a file: %d, %v", n, err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(d)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("peer read %d bytes (%v), want the file's %d then EOF", len(got), err, len(want))
	}
	if err := c.SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
}

// Wrap leaves what is not a TCP connection as it is.
func TestWrapOther(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T", got)
	}
}

// Peek sees bytes without taking them, nothing as EAGAIN, and the peer's
// close as 0 bytes.
func TestPeek(t *testing.T) {
	c, d := pair(t)
	peek := func() (int, syscall.Errno) {
		var n int
		var e syscall.Errno
		c.rc.Read(func(fd uintptr) bool { n, e = Peek(fd, make([]byte, 4)); return true })
		return n, e
	}
	if n, e := peek(); e != syscall.EAGAIN {
		t.Fatalf("peek of nothing: %d, %v; want EAGAIN", n, e)
	}
	// until peek says want (the bytes may take a moment to land)
	await := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, e := peek()
			if e == 0 && n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("peek %s: %d, %v; want %d bytes", what, n, e, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	d.Write([]byte("hello"))
	await("after a write", 4)
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
		t.Fatalf("read after peeks: %q, %v; the peeks took bytes", b, err)
	}
	d.Close()
	await("after close", 0)
}

// A Read and a Write allocate nothing.
func TestAllocs(t *testing.T) {
	c, d := pair(t)
	b := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		c.Write(b)
		io.ReadFull(d, b)
		d.Write(b)
		io.ReadFull(c, b)
	})
	// the peer's plain Read and Write allocate nothing either
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
}

// Ping-pong of 1 KiB over loopback: the Conn against a plain TCPConn.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{true, false} {
		name := map[bool]string{true: "raw", false: "plain"}[raw]
		b.Run(name, func(b *testing.B) {
			c, d := pair(b)
			var rw io.ReadWriter = c
			if !raw {
				rw = c.TCPConn
			}
			go func() {
				buf := make([]byte, 1024)
				for {
					if _, err := io.ReadFull(d, buf); err != nil {
						return
					}
					if _, err := d.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 1024)
			b.SetBytes(2048)
			b.ReportAllocs()
			for b.Loop() {
				rw.Write(buf)
				io.ReadFull(rw, buf)
			}
		})
	}
}
