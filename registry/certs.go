package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultCertsDir is where per-registry TLS material lives, in Docker's
// layout: DIR/HOST[:PORT]/*.crt are CA certificates trusted for that
// registry on top of the system roots, and DIR/HOST[:PORT]/NAME.cert with
// NAME.key are client certificate pairs presented to it.
const DefaultCertsDir = "/etc/docker/certs.d"

// CertsDirEnv overrides DefaultCertsDir (tests, rootless setups).
const CertsDirEnv = "STRATA_CERTS_DIR"

// certsDir is the certs.d root o uses.
func (o Options) certsDir() string {
	if o.CertsDir != "" {
		return o.CertsDir
	}
	if d := os.Getenv(CertsDirEnv); d != "" {
		return d
	}
	return DefaultCertsDir
}

// hostTLSConfig reads certsDir/host. It returns nil, nil when that
// directory does not exist, so the caller keeps its default transport.
// host is "HOST:PORT", or "HOST" for the default port, as Docker names the
// directories.
func hostTLSConfig(certsDir, host string) (*tls.Config, error) {
	if host == "" || host == "." || host == ".." || strings.ContainsAny(host, `/\`) {
		return nil, nil
	}
	dir := filepath.Join(certsDir, host)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading registry certificates: %w", err)
	}
	var (
		cas    [][]byte
		caFile []string
		certs  []tls.Certificate
	)
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	for _, e := range ents {
		n := e.Name()
		p := filepath.Join(dir, n)
		switch {
		case strings.HasSuffix(n, ".crt"):
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("reading registry CA: %w", err)
			}
			cas, caFile = append(cas, b), append(caFile, p)
		case strings.HasSuffix(n, ".cert"):
			key := strings.TrimSuffix(n, ".cert") + ".key"
			if !names[key] {
				return nil, fmt.Errorf("client certificate %s has no matching key %s", p, key)
			}
			c, err := tls.LoadX509KeyPair(p, filepath.Join(dir, key))
			if err != nil {
				return nil, fmt.Errorf("loading client certificate %s: %w", p, err)
			}
			certs = append(certs, c)
		case strings.HasSuffix(n, ".key"):
			if !names[strings.TrimSuffix(n, ".key")+".cert"] {
				return nil, fmt.Errorf("client key %s has no matching certificate %s", p, strings.TrimSuffix(n, ".key")+".cert")
			}
		}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
	if len(cas) > 0 {
		// The registry's CAs are added to, not substituted for, the system
		// roots (which honour SSL_CERT_FILE), as Docker does.
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for i, b := range cas {
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("registry CA %s holds no PEM certificate", caFile[i])
			}
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
