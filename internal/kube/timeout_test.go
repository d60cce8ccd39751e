package kube

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/kbak/kbak/internal/nettest"
)

// requestTimeout is the timeout under test; bound is how long a test waits
// before it calls the request hung.
const (
	requestTimeout = 300 * time.Millisecond
	bound          = 20 * time.Second
)

// trickle answers at once and then sends its body a byte at a time for
// four request timeouts.
func trickle(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	for range 8 {
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(requestTimeout / 2):
		case <-r.Context().Done():
			return
		}
	}
}

// timedConfig is a client configuration for host with the timeout under
// test, chained after a wrapper of its own that must stay in effect.
func timedConfig(host string) *rest.Config {
	cfg := &rest.Config{Host: host}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			r.Header.Set("X-Earlier-Wrapper", "kept")
			return rt.RoundTrip(r)
		})
	})
	WithRequestTimeout(cfg, requestTimeout)
	return cfg
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRequestTimeout(t *testing.T) {
	var sawWrapper sync.Map
	mux := http.NewServeMux()
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		sawWrapper.Store(r.URL.RawQuery, r.Header.Get("X-Earlier-Wrapper") == "kept")
		trickle(w, r)
	})
	mux.HandleFunc("/quick", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	silent := "http://" + nettest.SilentServer(t)

	tests := []struct {
		name    string
		url     string
		timeout bool // else the whole body arrives
	}{
		{"ordinary request never answered", silent + "/version", true},
		{"ordinary body slower than the timeout", srv.URL + "/trickle?a=1", true},
		{"log follow streams past the timeout", srv.URL + "/trickle?follow=true", false},
		{"watch streams past the timeout", srv.URL + "/trickle?watch=1", false},
		{"quick answer", srv.URL + "/quick", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := rest.HTTPClientFor(timedConfig(tt.url))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				resp, err := client.Get(tt.url)
				if err != nil {
					done <- err
					return
				}
				defer resp.Body.Close()
				_, err = io.ReadAll(resp.Body)
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(bound):
				t.Fatalf("no result after %s", bound)
			}
			if !tt.timeout {
				if err != nil {
					t.Fatalf("error %v after %s, want the whole body", err, time.Since(start))
				}
				return
			}
			if !errors.Is(err, ErrAPITimeout) {
				t.Fatalf("error %v, want one wrapping ErrAPITimeout", err)
			}
			if want := "no answer from the Kubernetes API server within 300ms"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			var te *APITimeoutError
			if !errors.As(err, &te) || !strings.HasPrefix(tt.url, te.Server+"/") {
				t.Errorf("timeout names server %+v, want the one of %s", te, tt.url)
			}
		})
	}
	sawWrapper.Range(func(q, kept any) bool {
		if !kept.(bool) {
			t.Errorf("request ?%s skipped the configuration's earlier wrapper", q)
		}
		return true
	})
}

// TestExecThroughRequestTimeout runs kube.Exec, WebSocket first and SPDY as
// the fallback, through the timeout: the upgraded stream outlives the
// timeout, a server that never answers the upgrade is a timeout.
func TestExecThroughRequestTimeout(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc // nil: a server that never answers
		want    string
	}{
		{"websocket", websocketExec, "hello over websocket\n"},
		{"spdy", spdyExec, "hello over spdy\n"},
		{"never answered", nil, ""},
		{"spdy upgrade never answered", spdySilent(t), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := ""
			if tt.handler == nil {
				host = "http://" + nettest.SilentServer(t)
			} else {
				srv := httptest.NewServer(tt.handler)
				defer srv.Close()
				host = srv.URL
			}
			cfg := timedConfig(host)
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				out string
				err error
			}
			done := make(chan result, 1)
			go func() {
				out, err := Exec(context.Background(), cfg, kc, "ns", "pod", "app", []string{"sync"})
				done <- result{out, err}
			}()
			var out string
			select {
			case r := <-done:
				out, err = r.out, r.err
			case <-time.After(bound):
				t.Fatalf("exec still going after %s", bound)
			}
			if tt.want == "" {
				if !errors.Is(err, ErrAPITimeout) {
					t.Fatalf("exec against a silent server: %v, want an error wrapping ErrAPITimeout", err)
				}
				return
			}
			if err != nil || out != tt.want {
				t.Fatalf("exec = %q, %v; want %q", out, err, tt.want)
			}
		})
	}
}

// TestSPDYExecutorTimeout shows that the SPDY executor, which reads the
// upgrade answer without watching its context, still gets the timeout. It
// keeps only the error's text; Exec restores the error.
func TestSPDYExecutorTimeout(t *testing.T) {
	host := "http://" + nettest.SilentServer(t)
	cfg := timedConfig(host)
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := kc.CoreV1().RESTClient().Post().Resource("pods").Namespace("ns").Name("pod").SubResource("exec").URL()
	exec, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- exec.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard})
	}()
	select {
	case err := <-done:
		if want := "no answer from the Kubernetes API server within 300ms"; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("SPDY exec against a silent server: %v, want an error saying %q", err, want)
		}
	case <-time.After(bound):
		t.Fatalf("SPDY exec still going after %s", bound)
	}
}

// websocketExec serves one exec over the v5 WebSocket protocol: it waits
// past the request timeout after the upgrade, then prints a line.
func websocketExec(w http.ResponseWriter, r *http.Request) {
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"v5.channel.k8s.io": {Binary: true, Channels: []wsstream.ChannelType{
			wsstream.IgnoreChannel, wsstream.WriteChannel, wsstream.WriteChannel, wsstream.WriteChannel, wsstream.IgnoreChannel,
		}},
	})
	_, channels, err := conn.Open(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	time.Sleep(2 * requestTimeout)
	channels[1].Write([]byte("hello over websocket\n"))
}

// spdyExec serves one exec over SPDY and turns WebSocket away, as an older
// API server does: it waits past the request timeout after the upgrade,
// then prints a line and ends every stream.
func spdyExec(w http.ResponseWriter, r *http.Request) {
	if wsstream.IsWebSocketRequest(r) {
		http.Error(w, "websockets not served here", http.StatusBadRequest)
		return
	}
	if _, err := httpstream.Handshake(r, w, []string{"v4.channel.k8s.io"}); err != nil {
		return
	}
	streams := make(chan httpstream.Stream, 4)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
		streams <- s
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	time.Sleep(2 * requestTimeout)
	for range 3 { // error, stdout, stderr
		select {
		case s := <-streams:
			if s.Headers().Get(corev1.StreamType) == corev1.StreamTypeStdout {
				s.Write([]byte("hello over spdy\n"))
			}
			s.Close()
		case <-conn.CloseChan():
			return
		case <-time.After(bound):
			return
		}
	}
	select {
	case <-conn.CloseChan():
	case <-time.After(bound):
	}
}

// spdySilent turns WebSocket away and then never answers the SPDY upgrade.
func spdySilent(t *testing.T) http.HandlerFunc {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	return func(w http.ResponseWriter, r *http.Request) {
		if wsstream.IsWebSocketRequest(r) {
			http.Error(w, "websockets not served here", http.StatusBadRequest)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		<-stop
	}
}
