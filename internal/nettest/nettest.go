// Package nettest has network peers for tests of what kbak does when a
// server misbehaves. It binds to 127.0.0.1 only.
package nettest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// SilentServer listens on 127.0.0.1, accepts every connection, reads what
// the client sends and never says a word, like a server behind a
// black-holing proxy. It returns its address; the test's cleanup closes it.
func SilentServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c) // take the request, say nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
