package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Retry policy. go-containerregistry retries single requests at the
// transport level, but a blob upload's requests (HEAD, POST, PATCH, PUT)
// and a manifest PUT run with retries of single requests turned off: only
// the whole upload is repeated, 3 times by default. At a 30% failure rate
// an upload of four requests then gets through 24% of the time and a blob
// fails 44% of the time. So strata retries every request that can safely be
// sent again (retryTransport, all but PATCH, whose partial body the registry
// may already have appended) and gives go-containerregistry's whole-upload
// retry (which covers PATCH with a fresh upload session) more attempts.
const (
	requestAttempts = 7 // per request, in retryTransport
	requestDelay    = 200 * time.Millisecond
	requestMaxDelay = 5 * time.Second
	maxRetryAfter   = 10 * time.Second

	uploadAttempts = 5 // whole blob uploads and manifest PUTs, in ggcr

	transferAttempts = 5 // whole blob downloads and manifest fetches, in Pull
	transferDelay    = 500 * time.Millisecond
)

// uploadBackoff is go-containerregistry's retry of a whole blob upload:
// 0.5s, 1s, 2s, 4s between 5 attempts.
func uploadBackoff() remote.Backoff {
	return remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: uploadAttempts}
}

// retryableStatus reports the HTTP statuses worth retrying: overload, rate
// limiting and server or gateway failures.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// transientNetError reports a dropped or reset connection, or a network
// timeout, as opposed to a refused connection or a TLS failure, which a
// retry does not cure.
func transientNetError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retriedError is a network error retryTransport already retried; the
// layers above must not retry it again (that would multiply the attempts).
type retriedError struct {
	err      error
	attempts int
}

func (e *retriedError) Error() string {
	return fmt.Sprintf("%v (after %d attempts)", e.err, e.attempts)
}

func (e *retriedError) Unwrap() error { return e.err }

// retriedKey marks, in the context of a response's Request, a response
// whose status retryTransport already retried.
type retriedKey struct{}

// shouldRetry is the predicate for go-containerregistry's retries and for
// Pull's transfer retries: a transient network error or a temporary
// registry error that retryTransport has not already exhausted.
// BLOB_UPLOAD_UNKNOWN is included: it means an upload session was lost
// (e.g. a commit whose answer was dropped), and a whole-upload retry starts
// with a HEAD that finds the blob if it did land.
func shouldRetry(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re *retriedError
	if errors.As(err, &re) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		if te.Request != nil && te.Request.Context().Value(retriedKey{}) != nil {
			return false
		}
		if te.Temporary() {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.BlobUploadUnknownErrorCode {
				return true
			}
		}
		return false
	}
	return transientNetError(err)
}

// retryTransport retries requests that can be replayed on retryable
// statuses (honouring Retry-After) and on dropped connections, with
// exponential backoff and jitter.
type retryTransport struct {
	inner    http.RoundTripper
	attempts int
	delay    time.Duration // before the second attempt; doubles, up to maxDelay
	maxDelay time.Duration
}

func newRetryTransport(inner http.RoundTripper) *retryTransport {
	return &retryTransport{inner: inner, attempts: requestAttempts, delay: requestDelay, maxDelay: requestMaxDelay}
}

// replayable: the body can be produced again, and the request does not
// append to server state (PATCH appends to an upload session).
func replayable(req *http.Request) bool {
	if req.Method == http.MethodPatch {
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !replayable(req) {
		return t.inner.RoundTrip(req)
	}
	ctx := req.Context()
	delay := t.delay
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.inner.RoundTrip(r)
		wait := jitter(delay)
		switch {
		case err != nil:
			if ctx.Err() != nil || !transientNetError(err) {
				return nil, err
			}
			if attempt == t.attempts {
				return nil, &retriedError{err: err, attempts: attempt}
			}
		case retryableStatus(resp.StatusCode):
			if attempt == t.attempts {
				if resp.Request != nil {
					resp.Request = resp.Request.WithContext(context.WithValue(resp.Request.Context(), retriedKey{}, true))
				}
				return resp, nil
			}
			if ra, ok := retryAfter(resp); ok {
				wait = ra
			}
			// Drain a little so the connection can be reused.
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		default:
			return resp, nil
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return nil, err
		}
		delay = min(2*delay, t.maxDelay)
	}
}

// retryAfter reads a Retry-After header given in seconds, capped.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter), true
	}
	return 0, false
}

// jitter spreads retries of concurrent transfers apart: d plus up to 20%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryTransfer runs f, a whole download (a blob, a manifest) whose body
// can fail after the response started and so is beyond retryTransport, up
// to transferAttempts times while the error is worth retrying.
func retryTransfer(ctx context.Context, f func() error) error {
	delay := transferDelay
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || attempt == transferAttempts || ctx.Err() != nil || !shouldRetry(err) {
			return err
		}
		if serr := sleepCtx(ctx, jitter(delay)); serr != nil {
			return err
		}
		delay *= 2
	}
}

// hostTransport picks, per request host, a transport that trusts the CAs
// and presents the client certificates of that host's certs.d directory;
// hosts without one share base.
type hostTransport struct {
	certsDir string
	base     *http.Transport

	mu     sync.Mutex
	byHost map[string]http.RoundTripper
	errs   map[string]error
	clones []*http.Transport
}

func newHostTransport(certsDir string, base *http.Transport) *hostTransport {
	return &hostTransport{certsDir: certsDir, base: base, byHost: map[string]http.RoundTripper{}, errs: map[string]error{}}
}

func (t *hostTransport) forHost(host string) (http.RoundTripper, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rt, ok := t.byHost[host]; ok {
		return rt, nil
	}
	if err, ok := t.errs[host]; ok {
		return nil, err
	}
	cfg, err := hostTLSConfig(t.certsDir, host)
	if err != nil {
		err = fmt.Errorf("registry %s: %w", host, err)
		t.errs[host] = err
		return nil, err
	}
	if cfg == nil {
		t.byHost[host] = t.base
		return t.base, nil
	}
	c := t.base.Clone()
	c.TLSClientConfig = cfg
	t.clones = append(t.clones, c)
	t.byHost[host] = c
	return c, nil
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, err := t.forHost(req.URL.Host)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return rt.RoundTrip(req)
}

// close drops the idle connections of the per-host transports made for
// one operation (the shared base keeps its pool).
func (t *hostTransport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.clones {
		c.CloseIdleConnections()
	}
}
