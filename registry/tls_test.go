package registry

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const tlsChildEnv = "STRATA_REGISTRY_TLS_URL"

// TestDefaultTransportHonoursSSLCertFile checks, in child processes (the
// system pool is loaded once per process), that the transport Pull and Push
// use by default trusts exactly the roots named by SSL_CERT_FILE.
func TestDefaultTransportHonoursSSLCertFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	certFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(certFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(t.TempDir(), "none.pem")
	if err := os.WriteFile(emptyFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		certFile string
		wantOK   bool
	}{
		{"trusted via SSL_CERT_FILE", certFile, true},
		{"not trusted", emptyFile, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestTLSChild$")
			cmd.Env = append(os.Environ(), tlsChildEnv+"="+srv.URL, "SSL_CERT_FILE="+tc.certFile, "SSL_CERT_DIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if ok := err == nil; ok != tc.wantOK {
				t.Fatalf("child succeeded=%v, want %v; output:\n%s", ok, tc.wantOK, out)
			}
		})
	}
}

// TestTLSChild is the child side of TestDefaultTransportHonoursSSLCertFile.
func TestTLSChild(t *testing.T) {
	url := os.Getenv(tlsChildEnv)
	if url == "" {
		t.Skip("only runs as a child of TestDefaultTransportHonoursSSLCertFile")
	}
	resp, err := (&http.Client{Transport: remote.DefaultTransport}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
