package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/client-go/rest"
)

// ErrAPITimeout is wrapped by the error of every Kubernetes API request that
// got no answer within the request timeout (see WithRequestTimeout).
var ErrAPITimeout = errors.New("no answer from the Kubernetes API server")

// APITimeoutError is a request the API server at Server did not answer
// within After. It wraps ErrAPITimeout.
type APITimeoutError struct {
	Server string // scheme://host[:port]
	After  time.Duration
}

func (e *APITimeoutError) Error() string { return fmt.Sprintf("%v within %s", ErrAPITimeout, e.After) }
func (e *APITimeoutError) Unwrap() error { return ErrAPITimeout }

// DefaultRequestTimeout is how long the API server may take to answer a
// request unless told otherwise.
const DefaultRequestTimeout = 30 * time.Second

// WithRequestTimeout makes every request of clients built from cfg fail
// with an APITimeoutError when the API server has not answered within d:
// ordinary requests must complete, body included; log follows, watches and
// exec or attach upgrades only need their response headers in time, as their
// bodies stream for as long as the work lasts. rest.Config.Timeout would cut
// those streams, so it is left alone. A d of zero or less changes nothing.
func WithRequestTimeout(cfg *rest.Config, d time.Duration) {
	if d <= 0 {
		return
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &timeoutRoundTripper{next: rt, timeout: d}
	})
}

type timeoutRoundTripper struct {
	next    http.RoundTripper
	timeout time.Duration
}

func (t *timeoutRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	// Read before next runs: the WebSocket round tripper rewrites the URL
	// and removes its protocol header from the request it is given.
	stream := streaming(req)
	timeout := &APITimeoutError{Server: req.URL.Scheme + "://" + req.URL.Host, After: t.timeout}

	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.timeout, func() { cancel(timeout) })
	resp, err := t.roundTrip(ctx, req.WithContext(ctx))
	if err != nil {
		timer.Stop()
		if errors.Is(context.Cause(ctx), ErrAPITimeout) {
			err = timeout
			if seen, ok := req.Context().Value(timeoutsKey{}).(*atomic.Pointer[APITimeoutError]); ok {
				seen.Store(timeout)
			}
		}
		cancel(nil)
		return nil, err
	}
	if stream {
		timer.Stop()
	}
	if resp.Body == nil {
		timer.Stop()
		cancel(nil)
		return resp, nil
	}
	b := &timedBody{body: resp.Body, ctx: ctx, timeout: timeout, timer: timer, cancel: cancel}
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok {
		// A 101 answer's body is the upgraded connection, written to as well.
		resp.Body = &timedRWBody{timedBody: b, w: rw}
	} else {
		resp.Body = b
	}
	return resp, nil
}

// timeoutsKey marks a context whose requests report their timeout to an
// *atomic.Pointer[APITimeoutError], for callers whose client flattens the
// error: the SPDY executor formats it with %v.
type timeoutsKey struct{}

// roundTrip returns when ctx ends even if next does not notice: the SPDY and
// WebSocket upgraders read their response headers without watching the
// context. A round trip left behind ends when the server answers or drops
// the connection.
func (t *timeoutRoundTripper) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := t.next.RoundTrip(req)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.resp != nil && r.resp.Body != nil {
				r.resp.Body.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

// streaming reports whether req's response streams for as long as the work
// it follows: log follows, watches, and upgrades to SPDY or WebSocket for
// exec, attach and port-forward. client-go's upgraders add the Connection
// header below this wrapper, so their protocol headers are what shows here.
func streaming(req *http.Request) bool {
	q := req.URL.Query()
	for _, p := range []string{"follow", "watch"} {
		if on, _ := strconv.ParseBool(q.Get(p)); on {
			return true
		}
	}
	return httpstream.IsUpgradeRequest(req) ||
		req.Header.Get(httpstream.HeaderProtocolVersion) != "" ||
		req.Header.Get(wsstream.WebSocketProtocolHeader) != ""
}

// timedBody ends the request's timer when the body has been read or closed,
// and reports a read cut by the timer as the timeout it is.
type timedBody struct {
	body    io.ReadCloser
	ctx     context.Context
	timeout *APITimeoutError
	timer   *time.Timer
	cancel  context.CancelCauseFunc
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.timer.Stop()
	case err != nil && errors.Is(context.Cause(b.ctx), ErrAPITimeout):
		err = b.timeout
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.timer.Stop()
	err := b.body.Close()
	b.cancel(nil)
	return err
}

type timedRWBody struct {
	*timedBody
	w io.Writer
}

func (b *timedRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }
