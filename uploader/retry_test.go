package uploader_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// Transient failures (a throttling 503, a 500, a connection dropped in the
// middle of a body) are retried: each part body is sent again from the start
// and the object arrives whole.
func TestS3PutRetriesTransientErrors(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)

	var mu sync.Mutex
	attempts := map[string]int{} // "part N" or "object", per request kind
	faults := map[string]func(w http.ResponseWriter, r *http.Request){
		"object": func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusInternalServerError, "InternalError")
		},
		"part 2": func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
		},
		"part 3": func(w http.ResponseWriter, r *http.Request) {
			// Take half the body, then drop the connection.
			io.CopyN(io.Discard, r.Body, r.ContentLength/2)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		},
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := ""
		switch q := r.URL.Query(); {
		case r.Method == http.MethodPut && q.Has("partNumber"):
			kind = "part " + q.Get("partNumber")
		case r.Method == http.MethodPut:
			kind = "object"
		}
		mu.Lock()
		attempts[kind]++
		first := attempts[kind] == 1
		mu.Unlock()
		if f := faults[kind]; f != nil && first {
			f(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	opts := srv.Options()
	opts.PartSize = uploader.MinPartSize
	opts.Endpoint = front.URL
	loc := "s3://" + srv.Bucket + "/retry"
	s, err := uploader.Open(t.Context(), loc, opts)
	if err != nil {
		t.Fatal(err)
	}

	big := uploadertest.Data(8, 4*uploader.MinPartSize+7)
	if err := s.Put(t.Context(), "big", bytes.NewReader(big), -1); err != nil {
		t.Fatalf("multipart Put through faults: %v", err)
	}
	small := uploadertest.Data(9, 1000)
	if err := s.Put(t.Context(), "small", bytes.NewReader(small), int64(len(small))); err != nil {
		t.Fatalf("single Put through a fault: %v", err)
	}
	for key, want := range map[string][]byte{"big": big, "small": small} {
		rc, err := s.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes (err %v), want the %d bytes sent", key, len(got), err, len(want))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for kind := range faults {
		if attempts[kind] < 2 {
			t.Errorf("%s: %d attempts, want a retry after the injected fault", kind, attempts[kind])
		}
	}
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>injected</Message></Error>`)
}
