package uploader_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/nettest"
	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

const (
	stallBucket = "kbak-stall"
	stallKey    = "obj"
	stallETag   = `"5eb63bbbe01eeed093cb22bb8f5acdc3"`
	stallIdle   = 300 * time.Millisecond
	// hangBound is far above what the idle timeout allows: it only turns a
	// hang into a failure.
	hangBound = 20 * time.Second
)

// A server that accepts connections and never answers makes Open fail
// within about the idle timeout, with one line wrapping ErrUnreachable,
// rather than after the 30 s bound of the whole check (or never).
func TestOpenSilentServer(t *testing.T) {
	isolateAWS(t)
	endpoint := "http://" + nettest.SilentServer(t)

	ctx, cancel := context.WithTimeout(t.Context(), hangBound)
	defer cancel()
	start := time.Now()
	s, err := uploader.Open(ctx, "s3://"+stallBucket, stallOptions(endpoint))
	if err == nil {
		t.Fatalf("Open against a silent server = %T, want an error", s)
	}
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, uploader.ErrUnreachable) {
		t.Errorf("err %q does not wrap ErrUnreachable", err)
	}
	msg := err.Error()
	if want := "cannot reach " + endpoint + ": no answer within " + stallIdle.String(); !strings.Contains(msg, want) {
		t.Errorf("message %q lacks %q", msg, want)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
}

// A GET whose body stalls half-way is resumed from the byte reached, only
// for the same ETag; when the server stalls on every attempt, the reader
// gives up with one line wrapping ErrStalled instead of hanging.
func TestS3GetStall(t *testing.T) {
	body := uploadertest.Data(11, 1<<20+7)
	half := len(body) / 2
	tests := []struct {
		name          string
		resumeAnswers bool   // the ranged retries send their body
		defaultsMode  string // AWS_DEFAULTS_MODE, which gives the SDK its own dialer
		wantErr       error
		want          []byte
	}{
		{name: "stalls again", wantErr: uploader.ErrStalled, want: body[:half]},
		{name: "resumes", resumeAnswers: true, want: body},
		{name: "resumes in defaults mode standard", resumeAnswers: true, defaultsMode: "standard", want: body},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWS(t)
			t.Setenv("AWS_DEFAULTS_MODE", tc.defaultsMode)
			srv := startStallingS3(t, body, tc.resumeAnswers)
			ctx, cancel := context.WithTimeout(t.Context(), hangBound)
			defer cancel()
			s, err := uploader.Open(ctx, "s3://"+stallBucket, stallOptions(srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			rc, err := s.Get(ctx, stallKey)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			start := time.Now()
			got, err := io.ReadAll(rc)
			t.Logf("after %s: %d bytes, err %v", time.Since(start).Round(time.Millisecond), len(got), err)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("read: %v, want the whole body", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("read: err %v, want one wrapping %v", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("message spans lines: %q", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("read %d bytes, want %d bytes identical to the object's first %d", len(got), len(tc.want), len(tc.want))
			}

			gets := srv.gets()
			if len(gets) < 2 {
				t.Fatalf("%d GETs of the object, want the first and at least one resumption", len(gets))
			}
			if r := gets[0].Get("Range"); r != "" {
				t.Errorf("first GET has Range %q, want none", r)
			}
			for i, h := range gets[1:] {
				if r, want := h.Get("Range"), fmt.Sprintf("bytes=%d-", half); r != want {
					t.Errorf("GET %d: Range %q, want %q", i+2, r, want)
				}
				if m := h.Get("If-Match"); m != stallETag {
					t.Errorf("GET %d: If-Match %q, want %q", i+2, m, stallETag)
				}
			}
		})
	}
}

// stallingS3 answers the bucket check, and serves one object whose first
// GET sends half the body and then stalls. Ranged GETs get their headers,
// then their part of the body when resumeAnswers, else a stall.
type stallingS3 struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header // of the object's GETs, in order
}

func startStallingS3(t *testing.T, body []byte, resumeAnswers bool) *stallingS3 {
	stop := make(chan struct{})
	f := &stallingS3{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stall := func() {
			http.NewResponseController(w).Flush()
			select {
			case <-stop:
			case <-r.Context().Done():
			}
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/"+stallBucket && r.URL.Query().Get("list-type") == "2":
			w.Header().Set("Content-Type", "application/xml")
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
				`<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>`+stallBucket+`</Name>`+
				`<Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`)
			return
		case r.Method != http.MethodGet || r.URL.Path != "/"+stallBucket+"/"+stallKey:
			s3Error(w, http.StatusNotFound, "NoSuchKey")
			return
		}
		f.mu.Lock()
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()

		w.Header().Set("ETag", stallETag)
		rng := r.Header.Get("Range")
		if rng == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
			stall()
			return
		}
		var from int
		if _, err := fmt.Sscanf(rng, "bytes=%d-", &from); err != nil || from >= len(body) {
			s3Error(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
			return
		}
		if r.Header.Get("If-Match") != stallETag {
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(body)-1, len(body)))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)-from))
		w.WriteHeader(http.StatusPartialContent)
		if !resumeAnswers {
			stall()
			return
		}
		w.Write(body[from:])
	}))
	// Cleanups run last first: the stalled handlers return before Close
	// waits for them.
	t.Cleanup(f.Close)
	t.Cleanup(func() { close(stop) })
	return f
}

func (f *stallingS3) gets() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.headers
}

func stallOptions(endpoint string) uploader.Options {
	return uploader.Options{
		Endpoint:        endpoint,
		Region:          "us-east-1",
		AccessKeyID:     "kbak-test",
		SecretAccessKey: "kbak-test-secret",
		IdleTimeout:     stallIdle,
	}
}

// isolateAWS keeps the machine's AWS settings out of a test: the SDK must
// not ask a metadata service, read a profile or pick another endpoint.
func isolateAWS(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, v := range []string{"AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULTS_MODE", "AWS_CA_BUNDLE"} {
		t.Setenv(v, "")
	}
}
