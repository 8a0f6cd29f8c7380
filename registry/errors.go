package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// AuthError reports that a registry refused a request for want of valid
// credentials: HTTP 401 or 403, or an UNAUTHORIZED or DENIED error code,
// from the registry or from its token service.
type AuthError struct {
	Registry string // host[:port] as in the image reference
	Denied   bool   // 403 / DENIED rather than 401 / UNAUTHORIZED
	Login    bool   // the credentials given to Login were refused
	Err      error  // the registry's answer
}

func (e *AuthError) Error() string {
	login := loginName(e.Registry)
	switch {
	case e.Login:
		return fmt.Sprintf("authentication failed for registry %s (wrong username or password)", e.Registry)
	case e.Denied:
		return fmt.Sprintf("access denied by registry %s (authentication failure: no, wrong or insufficient credentials; run strata login %s)", e.Registry, login)
	default:
		return fmt.Sprintf("authentication required by registry %s (no or wrong credentials; run strata login %s)", e.Registry, login)
	}
}

func (e *AuthError) Unwrap() error { return e.Err }

// TLSError reports that the TLS connection to a registry failed: its
// certificate is not trusted or does not match, or it wanted a client
// certificate.
type TLSError struct {
	Registry string
	CertsDir string // the certs.d root in use, for the hint
	Err      error  // the x509 or TLS error
}

func (e *TLSError) Error() string {
	dir := filepath.Join(e.CertsDir, e.Registry)
	if isTLSAlert(e.Err) {
		return fmt.Sprintf("registry %s refused the TLS handshake: %v (a client certificate goes in %s as client.cert and client.key)", e.Registry, e.Err, dir)
	}
	return fmt.Sprintf("TLS verification of registry %s failed: %v (trust its CA with %s/ca.crt or SSL_CERT_FILE, or use --insecure-registry %s for plain HTTP)", e.Registry, e.Err, dir, e.Registry)
}

func (e *TLSError) Unwrap() error { return e.Err }

// loginName is how a registry is named to strata login.
func loginName(reg string) string {
	if reg == name.DefaultRegistry {
		return "docker.io"
	}
	return reg
}

// isAuthFailure reports an answer that means missing or refused
// credentials, and whether it is a denial (403 / DENIED).
func isAuthFailure(te *transport.Error) (auth, denied bool) {
	for _, d := range te.Errors {
		switch d.Code {
		case transport.UnauthorizedErrorCode:
			auth = true
		case transport.DeniedErrorCode:
			auth, denied = true, true
		}
	}
	switch te.StatusCode {
	case http.StatusUnauthorized:
		auth = true
	case http.StatusForbidden:
		auth, denied = true, true
	}
	return auth, denied
}

// tlsFailure finds the certificate or handshake error in err.
func tlsFailure(err error) (error, bool) {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &verify):
		return verify, true
	case errors.As(err, &unknown):
		return unknown, true
	case errors.As(err, &hostname):
		return hostname, true
	case errors.As(err, &invalid):
		return invalid, true
	}
	var op *net.OpError
	if errors.As(err, &op) && isTLSAlert(op) {
		return op, true
	}
	return nil, false
}

// isTLSAlert reports an alert the peer sent during the handshake, e.g.
// "remote error: tls: certificate required"; crypto/tls reports those as a
// net.OpError with Op "remote error".
func isTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// describeRemoteError turns a registry's refusal of credentials or a TLS
// failure into a one-line AuthError or TLSError naming registry; other
// errors are returned unchanged.
func describeRemoteError(err error, registry, certsDir string) error {
	if err == nil {
		return nil
	}
	var ae *AuthError
	var tle *TLSError
	if errors.As(err, &ae) || errors.As(err, &tle) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		if auth, denied := isAuthFailure(te); auth {
			return &AuthError{Registry: registry, Denied: denied, Err: err}
		}
	}
	if terr, ok := tlsFailure(err); ok {
		return &TLSError{Registry: registry, CertsDir: certsDir, Err: terr}
	}
	return err
}

// IsAuthError reports whether err is (or wraps) an AuthError.
func IsAuthError(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}
