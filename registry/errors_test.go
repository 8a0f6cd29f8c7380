package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestDescribeRemoteError(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "https://reg.test:5000/v2/app/manifests/v1", nil)
	diag := func(status int, codes ...transport.ErrorCode) error {
		e := &transport.Error{StatusCode: status, Request: req}
		for _, c := range codes {
			e.Errors = append(e.Errors, transport.Diagnostic{Code: c, Message: "msg\nwith a newline"})
		}
		return e
	}
	const reg = "reg.test:5000"
	type kind int
	const (
		unchanged kind = iota
		auth
		denied
		tlsErr
	)
	tests := []struct {
		name string
		err  error
		want kind
	}{
		{"401 without body", diag(http.StatusUnauthorized), auth},
		{"401 UNAUTHORIZED", diag(http.StatusUnauthorized, transport.UnauthorizedErrorCode), auth},
		{"403", diag(http.StatusForbidden), denied},
		{"DENIED with 200-range status", diag(http.StatusOK, transport.DeniedErrorCode), denied},
		{"UNAUTHORIZED in a 400", diag(http.StatusBadRequest, transport.UnauthorizedErrorCode), auth},
		{"wrapped 401", fmt.Errorf("GET manifest: %w", diag(http.StatusUnauthorized)), auth},
		{"one of several (ping https+http)", fmt.Errorf("%w; %w", errors.New("tls: bad"), diag(http.StatusUnauthorized)), auth},
		{"404 MANIFEST_UNKNOWN", diag(http.StatusNotFound, transport.ManifestUnknownErrorCode), unchanged},
		{"500", diag(http.StatusInternalServerError), unchanged},
		{"429 TOOMANYREQUESTS", diag(http.StatusTooManyRequests, transport.TooManyRequestsErrorCode), unchanged},
		{"unknown authority", fmt.Errorf("Get: %w", x509.UnknownAuthorityError{}), tlsErr},
		{"hostname mismatch", fmt.Errorf("Get: %w", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "reg.test"}), tlsErr},
		{"x509 beside a 400 (ping https+http)", fmt.Errorf("%w; %w", x509.UnknownAuthorityError{}, diag(http.StatusBadRequest)), tlsErr},
		{"plain error", errors.New("connection refused"), unchanged},
		{"cancelled", context.Canceled, unchanged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := describeRemoteError(tc.err, reg, "/certs")
			var ae *AuthError
			var te *TLSError
			isAuth, isTLS := errors.As(got, &ae), errors.As(got, &te)
			switch tc.want {
			case unchanged:
				if got != tc.err {
					t.Errorf("got %v, want the error unchanged", got)
				}
			case auth, denied:
				if !isAuth {
					t.Fatalf("got %T %v, want an *AuthError", got, got)
				}
				if ae.Denied != (tc.want == denied) {
					t.Errorf("Denied = %v", ae.Denied)
				}
				msg := got.Error()
				for _, w := range []string{"registry " + reg, "authentication", "strata login " + reg} {
					if !strings.Contains(msg, w) {
						t.Errorf("%q does not mention %q", msg, w)
					}
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("message spans lines: %q", msg)
				}
				if !errors.Is(got, tc.err) {
					t.Error("the registry's answer is not kept as the cause")
				}
				if !IsAuthError(fmt.Errorf("pulling x: %w", got)) {
					t.Error("IsAuthError false through wrapping")
				}
			case tlsErr:
				if !isTLS {
					t.Fatalf("got %T %v, want a *TLSError", got, got)
				}
				msg := got.Error()
				for _, w := range []string{"x509", reg, "/certs/" + reg + "/ca.crt"} {
					if !strings.Contains(msg, w) {
						t.Errorf("%q does not mention %q", msg, w)
					}
				}
			}
			// Describing twice changes nothing.
			if again := describeRemoteError(got, reg, "/certs"); again != got {
				t.Errorf("second describe changed %v into %v", got, again)
			}
		})
	}
	if describeRemoteError(nil, reg, "") != nil {
		t.Error("nil error described as non-nil")
	}
}

func TestAuthErrorMessages(t *testing.T) {
	tests := []struct {
		e    AuthError
		want string
	}{
		{AuthError{Registry: "127.0.0.1:5001"}, "authentication required by registry 127.0.0.1:5001 (no or wrong credentials; run strata login 127.0.0.1:5001)"},
		{AuthError{Registry: "index.docker.io"}, "authentication required by registry index.docker.io (no or wrong credentials; run strata login docker.io)"},
		{AuthError{Registry: "r:1", Denied: true}, "access denied by registry r:1 (authentication failure: no, wrong or insufficient credentials; run strata login r:1)"},
		{AuthError{Registry: "r:1", Login: true}, "authentication failed for registry r:1 (wrong username or password)"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
