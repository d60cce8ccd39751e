// Package uploadertest holds what tests of uploader.Store need: the
// conformance suite every store must pass, and real S3-compatible servers
// (versitygw, MinIO) started on loopback for the duration of a test.
package uploadertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"crypto/tls"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbak/kbak/uploader"
)

// Server is an S3-compatible server running for one test.
type Server struct {
	Name      string // "versitygw" or "minio"
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string // created at start
	Client    *s3.Client
	CAFile    string // PEM of the CA that signed the server's certificate, for https servers
}

// URL is the repository URL of prefix (may be empty) in the server's bucket.
func (s *Server) URL(prefix string) string {
	return s.BucketURL(s.Bucket, prefix)
}

// BucketURL is the repository URL of prefix (may be empty) in bucket.
func (s *Server) BucketURL(bucket, prefix string) string {
	u := url.URL{Scheme: "s3", Host: bucket, Path: "/" + prefix}
	u.RawQuery = url.Values{"endpoint": {s.Endpoint}, "region": {s.Region}}.Encode()
	return u.String()
}

// Options carry the server's credentials.
func (s *Server) Options() uploader.Options {
	return uploader.Options{AccessKeyID: s.AccessKey, SecretAccessKey: uploader.Secret(s.SecretKey)}
}

// CreateBucket creates a bucket on the server.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", name, s.Name, err)
	}
}

// CreateLockBucket creates a bucket with Object Lock enabled.
func (s *Server) CreateLockBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name, ObjectLockEnabledForBucket: aws.Bool(true)})
	if err != nil {
		t.Fatalf("create bucket %s with Object Lock on %s: %v", name, s.Name, err)
	}
}

const (
	testAccessKey = "kbaktestaccess"
	testSecretKey = "kbaktestsecret0123456789"
	testRegion    = "us-east-1"
	testBucket    = "kbak-test"
	startTimeout  = 90 * time.Second
)

// StartVersityGW starts versitygw with a posix backend in a temporary
// directory. The binary comes from $KBAK_VERSITYGW or e2e/s3-build.sh.
// Without it the test fails when CI=true and is skipped otherwise.
func StartVersityGW(t testing.TB) *Server {
	t.Helper()
	bin := serverBinary(t, "versitygw", "KBAK_VERSITYGW")
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--access", testAccessKey, "--secret", testSecretKey,
		"--region", testRegion, "--port", addr, "--quiet", "posix", dir)
	return start(t, "versitygw", cmd, addr, "/", nil)
}

// StartVersityGWVersioned is StartVersityGW with bucket versioning
// available (a versioning directory): a bucket created with Object Lock is
// then versioned, as on AWS and MinIO.
func StartVersityGWVersioned(t testing.TB) *Server {
	t.Helper()
	bin := serverBinary(t, "versitygw", "KBAK_VERSITYGW")
	dir := t.TempDir()
	versions := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--access", testAccessKey, "--secret", testSecretKey,
		"--region", testRegion, "--port", addr, "--quiet", "posix", "--versioning-dir", versions, dir)
	s := start(t, "versitygw", cmd, addr, "/", nil)
	s.Name = "versitygw-versioned"
	return s
}

// StartVersityGWTLS is StartVersityGW serving https with a certificate from
// a CA made for the test; Server.CAFile holds that CA.
func StartVersityGWTLS(t testing.TB) *Server {
	t.Helper()
	bin := serverBinary(t, "versitygw", "KBAK_VERSITYGW")
	dir := t.TempDir()
	certDir := t.TempDir()
	ca := writeTestCA(t, certDir)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--access", testAccessKey, "--secret", testSecretKey,
		"--region", testRegion, "--port", addr, "--quiet",
		"--cert", filepath.Join(certDir, "server.pem"), "--key", filepath.Join(certDir, "server-key.pem"),
		"posix", dir)
	return start(t, "versitygw", cmd, addr, "/", ca)
}

// StartMinIO starts a single-drive MinIO server in a temporary directory.
// The binary comes from $KBAK_MINIO or e2e/s3-build.sh. Without it the test
// fails when CI=true and is skipped otherwise.
func StartMinIO(t testing.TB) *Server {
	t.Helper()
	bin := serverBinary(t, "minio", "KBAK_MINIO")
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "server", dir, "--address", addr, "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+testAccessKey,
		"MINIO_ROOT_PASSWORD="+testSecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	return start(t, "minio", cmd, addr, "/minio/health/ready", nil)
}

// start runs cmd until the test ends and waits for it to answer on addr;
// ca, when set, is the CA of an https server.
func start(t testing.TB, name string, cmd *exec.Cmd, addr, readyPath string, ca *testCA) *Server {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create %s log: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	endpoint := "http://" + addr
	httpClient := &http.Client{Timeout: 5 * time.Second}
	if ca != nil {
		endpoint = "https://" + addr
		httpClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}
	}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := httpClient.Get(endpoint + readyPath)
		if err == nil {
			resp.Body.Close()
			if readyPath == "/" || resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("%s exited before it was ready (%v); log:\n%s", name, err, tail(logPath))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after %s; log:\n%s", name, endpoint, startTimeout, tail(logPath))
		}
	}

	s := &Server{
		Name: name, Endpoint: endpoint, Region: testRegion,
		AccessKey: testAccessKey, SecretKey: testSecretKey, Bucket: testBucket,
	}
	if ca != nil {
		s.CAFile = ca.file
	}
	s.Client = s3.New(s3.Options{
		HTTPClient:                 httpClient,
		Region:                     testRegion,
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	s.CreateBucket(t, s.Bucket)
	t.Logf("%s listening on %s (log %s)", name, endpoint, logPath)
	return s
}

// serverBinary finds a test server: $env, else e2e/s3-build.sh, which
// prints the cached binary's path (and builds it the first time).
func serverBinary(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			missing(t, "%s=%s: %v", env, p, err)
		}
		return p
	}
	script, err := findUp("e2e/s3-build.sh")
	if err != nil {
		missing(t, "%s: set %s or run e2e/s3-build.sh %s: %v", name, env, name, err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script, name)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		missing(t, "%s: e2e/s3-build.sh %s: %v\n%s", name, name, err, stderr.String())
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) == 0 {
		missing(t, "%s: e2e/s3-build.sh printed no path", name)
	}
	return lines[len(lines)-1]
}

// missing fails in CI, where every server must be present, and skips
// elsewhere.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "S3 test server unavailable: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (CI=true makes this a failure)")
}

func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New(rel + " not found above the working directory")
		}
		dir = parent
	}
}

// freeAddr picks a free loopback port. Another process could take it before
// the server binds it; the start then fails visibly rather than silently.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
