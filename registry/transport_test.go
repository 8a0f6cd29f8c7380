package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// scripted answers each request with the next of its steps: a status, or
// an error when err is set. It records the bodies it was sent.
type scripted struct {
	mu     sync.Mutex
	steps  []scriptStep
	n      int
	bodies []string
}

type scriptStep struct {
	status int
	err    error
	header http.Header
}

func (s *scripted) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	s.bodies = append(s.bodies, string(body))
	st := s.steps[min(s.n, len(s.steps)-1)]
	s.n++
	if st.err != nil {
		return nil, st.err
	}
	h := st.header
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: st.status, Header: h, Body: io.NopCloser(strings.NewReader("answer")), Request: req}, nil
}

func resetErr() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func TestRetryTransport(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name         string
		method       string
		body         string
		steps        []scriptStep
		wantAttempts int
		wantStatus   int  // 0: an error
		wantAgain    bool // whether ggcr's retries (shouldRetry) would go on
	}{
		{"ok at once", "GET", "", []scriptStep{{status: 200}}, 1, 200, false},
		{"503 then ok", "GET", "", []scriptStep{{status: 503}, {status: 503}, {status: 200}}, 3, 200, false},
		{"429 then ok", "HEAD", "", []scriptStep{{status: 429}, {status: 200}}, 2, 200, false},
		{"reset then ok", "GET", "", []scriptStep{{err: resetErr()}, {status: 200}}, 2, 200, false},
		{"EOF then ok", "POST", "", []scriptStep{{err: io.ErrUnexpectedEOF}, {status: 202}}, 2, 202, false},
		{"manifest PUT body replayed", "PUT", `{"manifest":1}`, []scriptStep{{status: 500}, {err: resetErr()}, {status: 201}}, 3, 201, false},
		{"404 not retried", "GET", "", []scriptStep{{status: 404}, {status: 200}}, 1, 404, false},
		{"401 not retried", "GET", "", []scriptStep{{status: 401}, {status: 200}}, 1, 401, false},
		{"refused not retried", "GET", "", []scriptStep{{err: refused}, {status: 200}}, 1, 0, false},
		{"PATCH not retried on 500", "PATCH", "layer bytes", []scriptStep{{status: 500}, {status: 202}}, 1, 500, true},
		{"PATCH not retried on reset", "PATCH", "layer bytes", []scriptStep{{err: resetErr()}, {status: 202}}, 1, 0, true},
		{"statuses exhausted", "GET", "", []scriptStep{{status: 502}}, 4, 502, false},
		{"resets exhausted", "GET", "", []scriptStep{{err: resetErr()}}, 4, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := &scripted{steps: tc.steps}
			rt := &retryTransport{inner: inner, attempts: 4, delay: time.Millisecond, maxDelay: 2 * time.Millisecond}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body) // NewRequest sets GetBody
			}
			req, err := http.NewRequest(tc.method, "http://reg.test/v2/x", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rt.RoundTrip(req)
			if inner.n != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", inner.n, tc.wantAttempts)
			}
			for i, b := range inner.bodies {
				if b != tc.body {
					t.Errorf("attempt %d sent body %q, want %q", i+1, b, tc.body)
				}
			}
			if tc.wantStatus == 0 {
				if err == nil {
					t.Fatalf("status %d, want an error", resp.StatusCode)
				}
				if got := shouldRetry(err); got != tc.wantAgain {
					t.Errorf("shouldRetry(%v) = %v, want %v", err, got, tc.wantAgain)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			// What ggcr makes of the answer: retried again by its
			// whole-upload retry only if retryTransport did not exhaust it.
			if cerr := transport.CheckError(resp, 200, 201, 202); cerr != nil {
				if got := shouldRetry(cerr); got != tc.wantAgain {
					t.Errorf("shouldRetry(%v) = %v, want %v", cerr, got, tc.wantAgain)
				}
			}
		})
	}
}

func TestRetryTransportStopsOnCancel(t *testing.T) {
	inner := &scripted{steps: []scriptStep{{status: 503}}}
	rt := &retryTransport{inner: inner, attempts: 100, delay: time.Hour, maxDelay: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://reg.test/v2/", nil)
	done := make(chan error, 1)
	go func() {
		_, err := rt.RoundTrip(req)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{"0", 0, true},
		{"3600", maxRetryAfter, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Mon, 02 Jan 2006 15:04:05 GMT", 0, true}, // in the past
	}
	for _, tc := range tests {
		resp := &http.Response{Header: http.Header{"Retry-After": {tc.v}}}
		got, ok := retryAfter(resp)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Retry-After %q: %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

func TestShouldRetry(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://reg.test/", nil)
	marked := req.WithContext(context.WithValue(req.Context(), retriedKey{}, true))
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"reset", resetErr(), true},
		{"wrapped EOF", &url.Error{Op: "Get", URL: "x", Err: io.EOF}, true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"cancelled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"already retried", &retriedError{err: resetErr(), attempts: 7}, false},
		{"503", &transport.Error{StatusCode: 503, Request: req}, true},
		{"503 already retried", &transport.Error{StatusCode: 503, Request: marked}, false},
		{"400 BLOB_UPLOAD_INVALID", &transport.Error{StatusCode: 400, Errors: []transport.Diagnostic{{Code: transport.BlobUploadInvalidErrorCode}}}, true},
		{"404 BLOB_UPLOAD_UNKNOWN", &transport.Error{StatusCode: 404, Errors: []transport.Diagnostic{{Code: transport.BlobUploadUnknownErrorCode}}}, true},
		{"400 DIGEST_INVALID", &transport.Error{StatusCode: 400, Errors: []transport.Diagnostic{{Code: transport.DigestInvalidErrorCode}}}, false},
		{"401", &transport.Error{StatusCode: 401}, false},
		{"digest mismatch", errors.New("verifying blob: digest mismatch"), false},
	}
	for _, tc := range tests {
		if got := shouldRetry(tc.err); got != tc.want {
			t.Errorf("%s: shouldRetry = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// faultHandler answers a fraction of requests with 500/503/429 before
// they reach the registry, and cuts the connection in the middle of some
// upload bodies and blob downloads. A fault never hits the same request
// (method, path without upload id, body length) more than twice in a row,
// so the outcome does not depend on luck.
type faultHandler struct {
	next http.Handler
	rate float64

	mu     sync.Mutex
	rng    *rand.Rand
	streak map[string]int
	faults int
	total  int
}

func (f *faultHandler) key(r *http.Request) string {
	p := r.URL.Path
	if i := strings.Index(p, "/blobs/uploads/"); i >= 0 {
		p = p[:i+len("/blobs/uploads/")]
	}
	return fmt.Sprintf("%s %s %d", r.Method, p, r.ContentLength)
}

func (f *faultHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	k := f.key(r)
	fault := f.streak[k] < 2 && f.rng.Float64() < f.rate
	var kind int
	if fault {
		f.streak[k]++
		f.faults++
		kind = f.rng.IntN(4)
	} else {
		f.streak[k] = 0
	}
	f.total++
	f.mu.Unlock()
	if !fault {
		f.next.ServeHTTP(w, r)
		return
	}
	switch {
	case kind == 3 && r.Method == http.MethodPatch:
		// Read part of the upload, then drop the connection.
		io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		hijackClose(w)
	case kind == 3 && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:"):
		rec := &bufferedWriter{header: http.Header{}}
		f.next.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		w.Write(rec.buf.Bytes()[:rec.buf.Len()/2])
		w.(http.Flusher).Flush()
		hijackClose(w)
	default:
		code := []int{500, 503, 429, 503}[kind]
		http.Error(w, "injected fault", code)
	}
}

func hijackClose(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // RST rather than FIN
	}
	c.Close()
}

type bufferedWriter struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(s int)   { b.status = s }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = 200
	}
	return b.buf.Write(p)
}

// TestPushPullThroughFaults pushes and pulls with 30% of requests failing
// (statuses and connections cut mid-body) and checks the image arrives
// intact both ways.
func TestPushPullThroughFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for retry backoff")
	}
	f := &faultHandler{rate: 0.3, rng: rand.New(rand.NewPCG(1, 2)), streak: map[string]int{}}
	host := newRegistry(t, func(h http.Handler) http.Handler { f.next = h; return f })
	src := newStore(t)
	img, err := src.WriteImage(context.Background(), testConfig(), writeTestLayers(t, src, 4, Gzip), true)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/faulty/app:v1"
	if err := Push(context.Background(), src.V1(img), ref, anon); err != nil {
		t.Fatalf("push through faults: %v", err)
	}
	dst := newStore(t)
	got, err := dst.Pull(context.Background(), ref, anon)
	if err != nil {
		t.Fatalf("pull through faults: %v", err)
	}
	if got.Digest != img.Digest {
		t.Errorf("pulled %s, pushed %s", got.Digest, img.Digest)
	}
	f.mu.Lock()
	faults, total := f.faults, f.total
	f.mu.Unlock()
	if faults == 0 {
		t.Fatal("no fault was injected")
	}
	t.Logf("%d of %d requests failed", faults, total)
}

// TestPushRetriesEveryUploadStep fails each kind of upload request a few
// times and checks the push still lands, random image bytes and all.
func TestPushRetriesEveryUploadStep(t *testing.T) {
	for _, method := range []string{http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			var mu sync.Mutex
			failed := 0
			host := newRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == method && strings.Contains(r.URL.Path, "/blobs/") {
						mu.Lock()
						fail := failed < 2
						if fail {
							failed++
						}
						mu.Unlock()
						if fail {
							http.Error(w, "injected", http.StatusServiceUnavailable)
							return
						}
					}
					h.ServeHTTP(w, r)
				})
			})
			img, err := random.Image(2048, 1)
			if err != nil {
				t.Fatal(err)
			}
			ref := host + "/steps/app:v1"
			if err := Push(context.Background(), img, ref, anon); err != nil {
				t.Fatalf("push: %v", err)
			}
			got, err := newStore(t).Pull(context.Background(), ref, anon)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != mustDigest(t, img) {
				t.Errorf("pulled %s, pushed %s", got.Digest, mustDigest(t, img))
			}
			mu.Lock()
			defer mu.Unlock()
			if failed != 2 {
				t.Errorf("%d %s requests failed, want 2", failed, method)
			}
		})
	}
}
