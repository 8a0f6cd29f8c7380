package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const privUser, privPass = "strata", "pr1vate-pw"

// privateRegistry is a Debian docker-registry with TLS (a certificate from
// a CA made by the test) and htpasswd authentication.
type privateRegistry struct {
	addr     string // 127.0.0.1:PORT
	caFile   string // the CA, PEM
	certsDir string // a certs.d root with addr/ca.crt
}

// makeCert creates a key pair signed by parent (self-signed when parent is
// nil) and writes cert and key as PEM under dir/name.{crt,key}.
func makeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{
		name + ".crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		name + ".key": string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})),
	})
	return cert, key
}

// bcryptHash hashes pass for htpasswd. golang.org/x/crypto is not a
// dependency of the module, so the hash comes from the system's crypt(3)
// (libxcrypt does bcrypt) through perl, which every Debian has, or from
// apache2-utils' htpasswd when installed.
func bcryptHash(t *testing.T, pass string) string {
	t.Helper()
	const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	salt := make([]byte, 22)
	for i := range salt {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		salt[i] = alphabet[n.Int64()]
	}
	// Cost 5 (the minimum docker-registry accepts is 4) keeps login fast.
	out, err := exec.Command("perl", "-e", "print crypt($ARGV[0], $ARGV[1])", pass, "$2b$05$"+string(salt)).Output()
	if h := string(out); err == nil && strings.HasPrefix(h, "$2b$05$") && len(h) == 60 {
		return h
	}
	out, err = exec.Command("htpasswd", "-nbB", "-C", "5", "x", pass).Output()
	if h := strings.TrimSpace(strings.TrimPrefix(string(out), "x:")); err == nil && strings.HasPrefix(h, "$2") {
		return h
	}
	t.Fatalf("no way to make a bcrypt hash: perl's crypt() lacks bcrypt and htpasswd (apache2-utils) is missing")
	return ""
}

// startPrivateRegistry runs docker-registry with TLS and htpasswd on a free
// loopback port until the test ends.
func startPrivateRegistry(t *testing.T) *privateRegistry {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := makeCert(t, dir, "ca", nil, nil)
	makeCert(t, dir, "server", ca, caKey)
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(privUser+":"+bcryptHash(t, privPass)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		conf := filepath.Join(dir, "config.yml")
		yml := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
auth:
  htpasswd:
    realm: strata-private
    path: %s
http:
  addr: %s
  tls:
    certificate: %s
    key: %s
`, filepath.Join(dir, "data"), htpasswd, addr, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
		if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		var logBuf bytes.Buffer
		cmd := exec.Command("docker-registry", "serve", conf)
		cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting docker-registry: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		if lastErr = waitStatus(client, "https://"+addr+"/v2/", http.StatusUnauthorized, done); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(os.Interrupt)
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
			certsDir := filepath.Join(dir, "certs.d")
			ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
			writeFiles(t, certsDir, map[string]string{addr + "/ca.crt": string(ca)})
			return &privateRegistry{addr: addr, caFile: filepath.Join(dir, "ca.crt"), certsDir: certsDir}
		}
		_ = cmd.Process.Kill()
		<-done
		lastErr = fmt.Errorf("docker-registry on %s: %v\n%s", addr, lastErr, logBuf.String())
	}
	t.Fatal(lastErr)
	return nil
}

// isolatedEnv is an environment whose docker config is dir and whose
// certs.d root is certs, with no other place to find credentials.
func isolatedEnv(t *testing.T, dockerConfig, certs string, extra ...string) []string {
	home := t.TempDir()
	return append([]string{
		"DOCKER_CONFIG=" + dockerConfig,
		"STRATA_CERTS_DIR=" + certs,
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + home,
		"XDG_RUNTIME_DIR=" + home,
		"REGISTRY_AUTH_FILE=" + filepath.Join(home, "none.json"),
		"SSL_CERT_FILE=",
	}, extra...)
}

// mustSucceed fails the test when r failed and returns its stdout trimmed.
func mustSucceed(t *testing.T, r result, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s failed:\n%s", what, r)
	}
	return strings.TrimSpace(r.stdout)
}

// wantOneLineError checks that r failed with a single error line holding
// every one of want.
func wantOneLineError(t *testing.T, r result, what string, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("%s succeeded:\n%s", what, r)
	}
	msg := strings.TrimSpace(r.stderr)
	if strings.Contains(msg, "\n") {
		t.Errorf("%s: error spans several lines:\n%s", what, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: error %q does not mention %q", what, msg, w)
		}
	}
}

func TestPrivateRegistryAuthAndTLS(t *testing.T) {
	f := needRoot(t)
	p := startPrivateRegistry(t)
	reg := p.addr
	noCreds := t.TempDir()
	creds := t.TempDir()
	noCredsEnv := isolatedEnv(t, noCreds, p.certsDir)
	credsEnv := isolatedEnv(t, creds, p.certsDir)

	// The busybox base, from the shared registry, is what goes private.
	seed := t.TempDir()
	want := mustSucceed(t, runStrata(t, seed, "pull", f.registry+"/library/busybox:latest"), "pull busybox")
	private := reg + "/private/busybox:1"
	mustSucceed(t, runStrata(t, seed, "tag", f.registry+"/library/busybox:latest", private), "tag")

	authMsg := func(verb, ref string) string {
		return verb + " " + ref + ": authentication required by registry " + reg + " (no or wrong credentials; run strata login " + reg + ")"
	}

	t.Run("push without credentials", func(t *testing.T) {
		r := runStrataEnv(t, seed, noCredsEnv, "push", private)
		wantOneLineError(t, r, "push without credentials", authMsg("pushing", private))
	})

	t.Run("login with a wrong password", func(t *testing.T) {
		r := runStrataIO(t, "", credsEnv, "nope\n", "login", "-u", privUser, "--password-stdin", reg)
		wantOneLineError(t, r, "login with a wrong password", "authentication failed for registry "+reg)
		if _, err := os.Stat(filepath.Join(creds, "config.json")); !os.IsNotExist(err) {
			t.Errorf("a failed login wrote the docker config: %v", err)
		}
	})

	t.Run("login", func(t *testing.T) {
		// Keys strata does not know survive the rewrite.
		writeFiles(t, creds, map[string]string{"config.json": `{"auths":{"elsewhere.example":{"auth":"eDp5"}},"detachKeys":"ctrl-e,e"}`})
		r := runStrataIO(t, "", credsEnv, privPass+"\n", "login", "-u", privUser, "--password-stdin", reg)
		if out := mustSucceed(t, r, "login"); out != "Login Succeeded" {
			t.Errorf("login printed %q", out)
		}
		cfgPath := filepath.Join(creds, "config.json")
		fi, err := os.Stat(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("config.json mode %v, want 0600", fi.Mode().Perm())
		}
		var cfg struct {
			Auths      map[string]struct{ Auth string } `json:"auths"`
			DetachKeys string                           `json:"detachKeys"`
		}
		if err := json.Unmarshal([]byte(readFile(t, cfgPath)), &cfg); err != nil {
			t.Fatal(err)
		}
		if got := cfg.Auths[reg].Auth; got != base64.StdEncoding.EncodeToString([]byte(privUser+":"+privPass)) {
			t.Errorf("auths[%s].auth = %q", reg, got)
		}
		if cfg.DetachKeys != "ctrl-e,e" || cfg.Auths["elsewhere.example"].Auth != "eDp5" {
			t.Errorf("other keys lost: %+v", cfg)
		}
	})

	t.Run("push and pull with credentials", func(t *testing.T) {
		if got := mustSucceed(t, runStrataEnv(t, seed, credsEnv, "push", private), "push"); got != want {
			t.Errorf("push printed %q, want %s", got, want)
		}
		if got := mustSucceed(t, runStrataEnv(t, t.TempDir(), credsEnv, "pull", private), "pull"); got != want {
			t.Errorf("pulled %s, pushed %s", got, want)
		}
	})

	t.Run("pull without or with wrong credentials", func(t *testing.T) {
		wrong := t.TempDir()
		writeFiles(t, wrong, map[string]string{"config.json": `{"auths":{"` + reg + `":{"auth":"` +
			base64.StdEncoding.EncodeToString([]byte(privUser+":wrong")) + `"}}}`})
		for name, env := range map[string][]string{"none": noCredsEnv, "wrong": isolatedEnv(t, wrong, p.certsDir)} {
			r := runStrataEnv(t, t.TempDir(), env, "pull", private)
			wantOneLineError(t, r, "pull with "+name+" credentials", authMsg("pulling", private))
		}
	})

	t.Run("private base image in a build", func(t *testing.T) {
		ctxDir := t.TempDir()
		writeFiles(t, ctxDir, map[string]string{"Dockerfile": "FROM " + private + "\nRUN echo private > /private.txt\n"})
		app := reg + "/private/app:1"
		failed := build(t, buildOpts{root: t.TempDir(), context: ctxDir, env: noCredsEnv})
		if failed.code == 0 || !strings.Contains(failed.stderr, "authentication required by registry "+reg) {
			t.Errorf("build FROM a private image without credentials:\n%s", failed)
		}
		root := t.TempDir()
		mustBuild(t, buildOpts{root: root, context: ctxDir, env: credsEnv, tags: []string{app}, push: true})
		local := mustSucceed(t, runStrata(t, root, "inspect", app), "inspect")
		var ins struct{ Digest string }
		if err := json.Unmarshal([]byte(local), &ins); err != nil {
			t.Fatal(err)
		}
		if got := mustSucceed(t, runStrataEnv(t, t.TempDir(), credsEnv, "pull", app), "pull app"); got != ins.Digest {
			t.Errorf("pulled %s, built %s", got, ins.Digest)
		}
	})

	t.Run("TLS", func(t *testing.T) {
		emptyCerts := t.TempDir()
		r := runStrataEnv(t, t.TempDir(), isolatedEnv(t, creds, emptyCerts), "pull", private)
		wantOneLineError(t, r, "pull without the CA", "x509", "registry "+reg, "pulling "+private)
		// SSL_CERT_FILE alone is enough.
		env := isolatedEnv(t, creds, emptyCerts, "SSL_CERT_FILE="+p.caFile)
		if got := mustSucceed(t, runStrataEnv(t, t.TempDir(), env, "pull", private), "pull with SSL_CERT_FILE"); got != want {
			t.Errorf("pulled %s, want %s", got, want)
		}
	})

	t.Run("credential helper", func(t *testing.T) {
		bin, store := t.TempDir(), t.TempDir()
		// A credsStore helper keeping one credential in a file.
		writeFiles(t, bin, map[string]string{"docker-credential-stratatest": `#!/bin/sh
case "$1" in
store) cat > '` + store + `/creds' ;;
get) cat > /dev/null; if [ -f '` + store + `/creds' ]; then cat '` + store + `/creds'; else echo "credentials not found in native keychain"; exit 1; fi ;;
erase) cat > /dev/null; rm -f '` + store + `/creds' ;;
esac
`})
		if err := os.Chmod(filepath.Join(bin, "docker-credential-stratatest"), 0o755); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"config.json": `{"credsStore":"stratatest"}`})
		env := isolatedEnv(t, dir, p.certsDir, "PATH="+bin+":"+os.Getenv("PATH"))
		mustSucceed(t, runStrataIO(t, "", env, privPass, "login", "-u", privUser, "--password-stdin", reg), "login via helper")
		if cfg := readFile(t, filepath.Join(dir, "config.json")); strings.Contains(cfg, base64.StdEncoding.EncodeToString([]byte(privUser+":"+privPass))) {
			t.Errorf("secret in config.json despite credsStore:\n%s", cfg)
		}
		if got := mustSucceed(t, runStrataEnv(t, t.TempDir(), env, "pull", private), "pull via helper"); got != want {
			t.Errorf("pulled %s, want %s", got, want)
		}
		mustSucceed(t, runStrataEnv(t, "", env, "logout", reg), "logout via helper")
		if _, err := os.Stat(filepath.Join(store, "creds")); !os.IsNotExist(err) {
			t.Errorf("helper still holds the credential: %v", err)
		}
	})

	t.Run("logout", func(t *testing.T) {
		if out := mustSucceed(t, runStrataEnv(t, "", credsEnv, "logout", reg), "logout"); !strings.Contains(out, reg) {
			t.Errorf("logout printed %q", out)
		}
		if strings.Contains(readFile(t, filepath.Join(creds, "config.json")), reg) {
			t.Error("config.json still names the registry")
		}
		r := runStrataEnv(t, t.TempDir(), credsEnv, "pull", private)
		wantOneLineError(t, r, "pull after logout", authMsg("pulling", private))
	})
}
