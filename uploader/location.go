package uploader

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Errors that Open and ParseURL wrap, so that the command line can map them
// to exit codes: ErrBadURL is a usage error, the others are failures.
var (
	// ErrBadURL: the repository URL is malformed.
	ErrBadURL = errors.New("bad repository URL")
	// ErrNoBucket: the bucket (or, for file://, the directory) does not exist.
	ErrNoBucket = errors.New("repository bucket or directory does not exist")
	// ErrAccessDenied: the store refused the credentials, or (wrapped by
	// Delete errors) refused them the right to delete.
	ErrAccessDenied = errors.New("access denied")
	// ErrUnreachable: the store cannot be reached at all.
	ErrUnreachable = errors.New("store unreachable")
	// ErrStalled: Get gave up on an S3 server that stopped sending data.
	ErrStalled = errors.New("store stalled")
)

// openError carries a message written for a person and the sentinel that
// classifies it; the message alone is what Error returns.
type openError struct {
	kind  error
	msg   string
	cause error
}

func (e *openError) Error() string { return e.msg }
func (e *openError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func badURL(format string, args ...any) error {
	return &openError{kind: ErrBadURL, msg: "bad repository URL: " + fmt.Sprintf(format, args...)}
}

// Location is a parsed repository URL. Its String never contains
// credentials: URLs that carry any are rejected by ParseURL.
type Location struct {
	Scheme string // "s3" or "file"
	Bucket string // s3 only
	Prefix string // s3 only: key prefix without leading or trailing slash, may be empty
	Dir    string // file only: absolute, cleaned directory

	// From the s3 URL's query; empty or nil when absent.
	Endpoint  string
	Region    string
	PathStyle *bool
	// UseIMDS (?imds=true) lets the credential chain ask an EC2 instance
	// metadata service; see Options.UseIMDS.
	UseIMDS bool
}

const urlForms = "use s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=true|false&imds=true] or file:///ABS/DIR"

// ParseURL parses a repository URL:
//
//	s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=true|false]
//	file:///ABS/DIR
//
// Errors wrap ErrBadURL.
func ParseURL(raw string) (Location, error) {
	if strings.TrimSpace(raw) == "" {
		return Location{}, badURL("empty: %s", urlForms)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the input, which may hold a secret: keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Location{}, badURL("%v: %s", err, urlForms)
	}
	if u.User != nil {
		return Location{}, badURL("credentials in the URL are not accepted: use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile")
	}
	switch u.Scheme {
	case "s3":
		return parseS3(u)
	case "file":
		return parseFile(u)
	case "":
		return Location{}, badURL("%q has no scheme: %s", raw, urlForms)
	default:
		return Location{}, badURL("unsupported scheme %q: %s", u.Scheme, urlForms)
	}
}

func parseS3(u *url.URL) (Location, error) {
	loc := Location{Scheme: "s3", Bucket: u.Host}
	if loc.Bucket == "" {
		return Location{}, badURL("s3 URL without a bucket: %s", urlForms)
	}
	if !validBucket(loc.Bucket) {
		return Location{}, badURL("invalid bucket name %q: 3 to 63 lowercase letters, digits, dots and hyphens", loc.Bucket)
	}
	if u.Fragment != "" {
		return Location{}, badURL("s3 URL with a fragment #%s", u.Fragment)
	}
	p := strings.Trim(u.Path, "/")
	if p != "" {
		if err := validateKey(p); err != nil {
			return Location{}, badURL("prefix %q: %v", p, err)
		}
	}
	loc.Prefix = p
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			return Location{}, badURL("query parameter %s given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "endpoint":
			if err := checkEndpoint(v); err != nil {
				return Location{}, badURL("endpoint: %v", err)
			}
			loc.Endpoint = v
		case "region":
			if v == "" {
				return Location{}, badURL("empty region")
			}
			loc.Region = v
		case "path-style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Location{}, badURL("path-style=%q: want true or false", v)
			}
			loc.PathStyle = &b
		case "imds":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Location{}, badURL("imds=%q: want true or false", v)
			}
			loc.UseIMDS = b
		default:
			return Location{}, badURL("unknown query parameter %q: want endpoint, region, path-style or imds", k)
		}
	}
	return loc, nil
}

func parseFile(u *url.URL) (Location, error) {
	if u.Host != "" && u.Host != "localhost" {
		return Location{}, badURL("file URL with host %q: use file:///ABS/DIR (three slashes)", u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Location{}, badURL("file URL with a query or fragment")
	}
	if u.Opaque != "" || !path.IsAbs(u.Path) {
		return Location{}, badURL("file URL needs an absolute path: file:///ABS/DIR")
	}
	return Location{Scheme: "file", Dir: path.Clean(u.Path)}, nil
}

// checkEndpoint accepts http and https URLs with a host and nothing that
// could hold a secret.
func checkEndpoint(v string) error {
	e, err := url.Parse(v)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	if e.Scheme != "http" && e.Scheme != "https" {
		return fmt.Errorf("%q is not an http:// or https:// URL", e.Redacted())
	}
	if e.Host == "" {
		return fmt.Errorf("%q has no host", e.Redacted())
	}
	if e.User != nil {
		return errors.New("credentials in the endpoint URL are not accepted")
	}
	return nil
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// String gives the URL back in canonical form.
func (l Location) String() string {
	switch l.Scheme {
	case "file":
		return (&url.URL{Scheme: "file", Path: l.Dir}).String()
	case "s3":
		u := url.URL{Scheme: "s3", Host: l.Bucket}
		if l.Prefix != "" {
			u.Path = "/" + l.Prefix
		}
		q := url.Values{}
		if l.Endpoint != "" {
			q.Set("endpoint", l.Endpoint)
		}
		if l.Region != "" {
			q.Set("region", l.Region)
		}
		if l.PathStyle != nil {
			q.Set("path-style", strconv.FormatBool(*l.PathStyle))
		}
		if l.UseIMDS {
			q.Set("imds", "true")
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	return ""
}

// validateKey rejects keys that could escape the repository root or that
// the stores could not represent the same way: empty, absolute, with empty,
// "." or ".." segments, backslashes or NUL bytes.
func validateKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if strings.HasPrefix(key, "/") {
		return errors.New("absolute key")
	}
	if strings.ContainsAny(key, "\\\x00") {
		return errors.New("key with a backslash or NUL byte")
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return errors.New("key with an empty segment (// or a trailing /)")
		case ".", "..":
			return fmt.Errorf("key with a %q segment", seg)
		}
		if strings.HasPrefix(seg, tmpPrefix) {
			return fmt.Errorf("key segment %q uses the reserved prefix %s", seg, tmpPrefix)
		}
	}
	return nil
}
