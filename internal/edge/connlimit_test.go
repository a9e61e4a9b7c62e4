package edge

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// The limit holds across listeners, frees a slot when a connection
// closes, lets Close end a waiting Accept, and keeps what net/http looks
// for on a connection (sendfile through ReadFrom, half-close).
func TestConnLimit(t *testing.T) {
	lim := NewConnLimit(2)
	var lns []net.Listener
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, lim.Listener(ln))
		defer ln.Close()
	}
	accept := func(ln net.Listener) chan net.Conn {
		ch := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}()
		d, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return ch
	}
	c1 := <-accept(lns[0])
	c2 := <-accept(lns[1])
	if _, ok := c1.(io.ReaderFrom); !ok {
		t.Error("no ReadFrom: sendfile lost")
	}
	if _, ok := c1.(interface{ CloseWrite() error }); !ok {
		t.Error("no CloseWrite: net/http's half-close lost")
	}
	third := accept(lns[0])
	select {
	case <-third:
		t.Fatal("a third connection accepted with a limit of 2")
	case <-time.After(200 * time.Millisecond):
	}
	c1.Close()
	c1.Close() // frees one slot, once
	select {
	case c3 := <-third:
		defer c3.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a closed connection did not free its slot")
	}
	waiting := make(chan error, 1)
	go func() { _, err := lns[1].Accept(); waiting <- err }()
	time.Sleep(50 * time.Millisecond)
	lns[1].Close()
	select {
	case err := <-waiting:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end an Accept waiting for a slot")
	}
	c2.Close()
	if NewConnLimit(0) != nil || NewConnLimit(0).Listener(lns[0]) != lns[0] {
		t.Error("a zero limit wraps")
	}
}
