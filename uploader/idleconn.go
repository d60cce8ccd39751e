package uploader

import (
	"context"
	"net"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// idleChunk bounds one Write on the wire, so that a large write to a slow
// but moving peer extends the deadline as it goes instead of timing out as a
// whole.
const idleChunk = 64 << 10

// withIdleTimeout makes every connection of b fail once no byte has moved on
// it, in either direction, for idle; and makes a request fail when its
// response headers take longer than idle. Neither net/http nor the SDK bounds
// a silent connection, so a server that accepts and never answers, or stalls
// in the middle of a body, would otherwise hang kbak forever; the SDK then
// retries the timed-out request as it does other transient errors.
func withIdleTimeout(b *awshttp.BuildableClient, idle time.Duration) *awshttp.BuildableClient {
	return b.WithTransportOptions(func(t *http.Transport) {
		t.ResponseHeaderTimeout = idle
		dial := t.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: idle}, nil
		}
	})
}

// idleConn pushes both deadlines forward on every Read or Write that moves
// bytes. Both, because net/http keeps a Read pending on the connection while
// it writes the request body: an upload in progress must keep that Read
// alive, and a response arriving must keep a blocked Write alive.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.extend()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.extend()
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		c.extend()
		n, err := c.Conn.Write(p[:min(len(p), idleChunk)])
		done += n
		if err != nil {
			return done, err
		}
		p = p[n:]
	}
	if done > 0 {
		c.extend()
	}
	return done, nil
}

// extend ignores the error of SetDeadline: it fails only on a closed
// connection, which the Read or Write that follows reports.
func (c *idleConn) extend() {
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
}
