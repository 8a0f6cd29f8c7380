package registry

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

func TestHostTLSConfig(t *testing.T) {
	ca := newTestCA(t, "ca")
	_, certPEM, keyPEM := ca.issue(t, "client", true)
	tests := []struct {
		name      string
		host      string
		files     map[string][]byte // written under certs.d/registry.test:5000
		wantNil   bool
		wantErr   string
		wantRoots bool
		wantCerts int
	}{
		{name: "no directory", host: "registry.test:5000", wantNil: true},
		{name: "other host's directory", host: "other.test:5000", files: map[string][]byte{"ca.crt": ca.pem}, wantNil: true},
		{name: "empty directory", host: "registry.test:5000", files: map[string][]byte{}},
		{name: "CA", host: "registry.test:5000", files: map[string][]byte{"ca.crt": ca.pem}, wantRoots: true},
		{name: "two CAs", host: "registry.test:5000", files: map[string][]byte{"a.crt": ca.pem, "b.crt": newTestCA(t, "b").pem}, wantRoots: true},
		{name: "client pair", host: "registry.test:5000", files: map[string][]byte{"client.cert": certPEM, "client.key": keyPEM}, wantCerts: 1},
		{name: "CA and client pair", host: "registry.test:5000", files: map[string][]byte{"ca.crt": ca.pem, "client.cert": certPEM, "client.key": keyPEM}, wantRoots: true, wantCerts: 1},
		{name: "other files ignored", host: "registry.test:5000", files: map[string][]byte{"README": []byte("hi"), "ca.pem": []byte("not read")}},
		{name: "CA without PEM", host: "registry.test:5000", files: map[string][]byte{"ca.crt": []byte("garbage")}, wantErr: "holds no PEM certificate"},
		{name: "cert without key", host: "registry.test:5000", files: map[string][]byte{"client.cert": certPEM}, wantErr: "no matching key"},
		{name: "key without cert", host: "registry.test:5000", files: map[string][]byte{"client.key": keyPEM}, wantErr: "no matching certificate"},
		{name: "mismatched pair", host: "registry.test:5000", files: map[string][]byte{"client.cert": certPEM, "client.key": ca.pem}, wantErr: "loading client certificate"},
		{name: "dot-dot host", host: "..", files: map[string][]byte{"ca.crt": ca.pem}, wantNil: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.files != nil {
				writeCertsDir(t, root, "registry.test:5000", tc.files)
			}
			cfg, err := hostTLSConfig(root, tc.host)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNil {
				if cfg != nil {
					t.Fatalf("config %+v, want nil", cfg)
				}
				return
			}
			if cfg == nil {
				t.Fatal("nil config")
			}
			if got := cfg.RootCAs != nil; got != tc.wantRoots {
				t.Errorf("RootCAs set = %v, want %v", got, tc.wantRoots)
			}
			if len(cfg.Certificates) != tc.wantCerts {
				t.Errorf("%d client certificates, want %d", len(cfg.Certificates), tc.wantCerts)
			}
		})
	}
}

func TestCertsDirEnv(t *testing.T) {
	t.Setenv(CertsDirEnv, "/from/env")
	if got := (Options{}).certsDir(); got != "/from/env" {
		t.Errorf("certsDir = %q with %s set", got, CertsDirEnv)
	}
	if got := (Options{CertsDir: "/explicit"}).certsDir(); got != "/explicit" {
		t.Errorf("certsDir = %q, want the option", got)
	}
	t.Setenv(CertsDirEnv, "")
	if got := (Options{}).certsDir(); got != DefaultCertsDir {
		t.Errorf("certsDir = %q, want %s", got, DefaultCertsDir)
	}
}

// TestPushPullOverTLSWithCertsDir talks to registries whose certificates
// only a certs.d directory makes trusted, one of them requiring a client
// certificate.
func TestPushPullOverTLSWithCertsDir(t *testing.T) {
	ca := newTestCA(t, "registry CA")
	clientCA := newTestCA(t, "client CA")
	_, clientCert, clientKey := clientCA.issue(t, "strata", true)
	plain := newTLSRegistry(t, ca, nil)
	mtls := newTLSRegistry(t, ca, clientCA)

	tests := []struct {
		name    string
		host    string
		files   map[string][]byte
		wantErr []string // substrings; nil = success
	}{
		{"CA trusted", plain, map[string][]byte{"ca.crt": ca.pem}, nil},
		{"no certs.d entry", plain, nil, []string{"x509", "TLS verification of registry " + plain}},
		{"wrong CA", plain, map[string][]byte{"ca.crt": clientCA.pem}, []string{"x509", plain}},
		{"client certificate presented", mtls, map[string][]byte{"ca.crt": ca.pem, "client.cert": clientCert, "client.key": clientKey}, nil},
		{"client certificate missing", mtls, map[string][]byte{"ca.crt": ca.pem}, []string{"refused the TLS handshake", mtls, "client.cert"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs := t.TempDir()
			if tc.files != nil {
				writeCertsDir(t, certs, tc.host, tc.files)
			}
			o := anon
			o.CertsDir = certs
			img, err := random.Image(1024, 2)
			if err != nil {
				t.Fatal(err)
			}
			ref := tc.host + "/tls/app:v1"
			err = Push(context.Background(), img, ref, o)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("push succeeded")
				}
				var te *TLSError
				if !errors.As(err, &te) {
					t.Errorf("error is not a *TLSError: %v", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := newStore(t)
			got, err := s.Pull(context.Background(), ref, o)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != mustDigest(t, img) {
				t.Errorf("pulled %s, pushed %s", got.Digest, mustDigest(t, img))
			}
		})
	}
}
