package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

const testUser, testPass = "strata", "s3cret"

// basicAuth wraps a registry with HTTP basic authentication.
func basicAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tokenAuth wraps a registry with the bearer token flow: /token trades
// basic credentials for a token, everything else wants that token.
type tokenAuth struct {
	next   http.Handler
	mu     sync.Mutex
	scopes []string // scopes asked of /token
}

func (a *tokenAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		a.mu.Lock()
		a.scopes = append(a.scopes, r.URL.Query()["scope"]...)
		a.mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPass {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"token": "tok-" + testUser})
		return
	}
	if r.Header.Get("Authorization") != "Bearer tok-"+testUser {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	a.next.ServeHTTP(w, r)
}

func staticKeychain(user, pass string) authn.Keychain {
	return staticKC{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}
}

type staticKC struct{ a authn.Authenticator }

func (k staticKC) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

func TestLoginAndAuthErrors(t *testing.T) {
	basicHost := newRegistry(t, basicAuth)
	tok := &tokenAuth{}
	tokenHost := newRegistry(t, func(h http.Handler) http.Handler { tok.next = h; return tok })
	for _, tc := range []struct{ name, host string }{{"basic", basicHost}, {"bearer", tokenHost}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if err := Login(ctx, tc.host, testUser, testPass, anon); err != nil {
				t.Fatalf("login with the right password: %v", err)
			}
			err := Login(ctx, tc.host, testUser, "wrong", anon)
			var ae *AuthError
			if !errors.As(err, &ae) || !ae.Login || ae.Registry != tc.host {
				t.Fatalf("login with a wrong password: %v, want an *AuthError for %s", err, tc.host)
			}
			if !strings.Contains(err.Error(), "authentication failed for registry "+tc.host) {
				t.Errorf("message %q", err)
			}

			ref := tc.host + "/private/img:1"
			img, _ := random.Image(1024, 1)
			good := Options{Keychain: staticKeychain(testUser, testPass)}
			if err := Push(ctx, img, ref, good); err != nil {
				t.Fatalf("push with credentials: %v", err)
			}
			for _, kc := range []struct {
				name string
				o    Options
			}{{"none", anon}, {"wrong", Options{Keychain: staticKeychain(testUser, "nope")}}} {
				_, err := newStore(t).Pull(ctx, ref, kc.o)
				want := "pulling " + ref + ": authentication required by registry " + tc.host + " (no or wrong credentials; run strata login " + tc.host + ")"
				if err == nil || err.Error() != want {
					t.Errorf("pull with %s credentials:\n got  %v\n want %s", kc.name, err, want)
				}
				err = Push(ctx, img, tc.host+"/private/other:1", kc.o)
				if !IsAuthError(err) || !strings.Contains(err.Error(), "pushing "+tc.host+"/private/other:1: ") {
					t.Errorf("push with %s credentials: %v, want an auth error", kc.name, err)
				}
			}
			if _, err := newStore(t).Pull(ctx, ref, good); err != nil {
				t.Errorf("pull with credentials: %v", err)
			}
		})
	}
	tok.mu.Lock()
	defer tok.mu.Unlock()
	if !containsString(tok.scopes, "repository:strata-login-check:pull") {
		t.Errorf("login asked for scopes %v, want a pull scope on the dummy repository", tok.scopes)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestParseRegistry(t *testing.T) {
	tests := []struct {
		in, key, reg string
		insecure     []string
		scheme       string
		bad          bool
	}{
		{in: "reg.example:5000", key: "reg.example:5000", reg: "reg.example:5000", scheme: "https"},
		{in: "https://reg.example:5000/", key: "reg.example:5000", reg: "reg.example:5000", scheme: "https"},
		{in: "http://reg.example/v2/", key: "reg.example", reg: "reg.example", scheme: "https"},
		{in: "reg.example:5000", insecure: []string{"reg.example:5000"}, key: "reg.example:5000", reg: "reg.example:5000", scheme: "http"},
		{in: "docker.io", key: "https://index.docker.io/v1/", reg: "index.docker.io", scheme: "https"},
		{in: "index.docker.io", key: "https://index.docker.io/v1/", reg: "index.docker.io", scheme: "https"},
		{in: "https://index.docker.io/v1/", key: "https://index.docker.io/v1/", reg: "index.docker.io", scheme: "https"},
		{in: "127.0.0.1:5000", key: "127.0.0.1:5000", reg: "127.0.0.1:5000", scheme: "http"},
		{in: "", bad: true},
		{in: "https://", bad: true},
		{in: "bad host:5000", bad: true},
	}
	for _, tc := range tests {
		reg, key, err := ParseRegistry(tc.in, tc.insecure)
		if tc.bad {
			if err == nil {
				t.Errorf("%q accepted as %v", tc.in, reg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if key != tc.key || reg.RegistryStr() != tc.reg || reg.Scheme() != tc.scheme {
			t.Errorf("%q: key %q registry %q scheme %s; want %q %q %s", tc.in, key, reg.RegistryStr(), reg.Scheme(), tc.key, tc.reg, tc.scheme)
		}
	}
}

func readJSON(t *testing.T, p string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v\n%s", p, err, b)
	}
	return m
}

// resolve asks authn.DefaultKeychain, as pulls do, for ref's credentials.
func resolve(t *testing.T, ref string) authn.AuthConfig {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	a, err := authn.DefaultKeychain.Resolve(r.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth != "" && cfg.Username == "" {
		b, _ := base64.StdEncoding.DecodeString(cfg.Auth)
		cfg.Username, cfg.Password, _ = strings.Cut(string(b), ":")
	}
	return *cfg
}

func TestSaveCredentialsPlain(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("HOME", t.TempDir())
	orig := `{
	"auths": {"other.example": {"auth": "b3RoZXI6cGFzcw==", "email": "x@y"}},
	"proxies": {"default": {"httpProxy": "http://proxy:3128"}},
	"currentContext": "rootless",
	"psFormat": "table {{.ID}}"
}`
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SaveCredentials(dir, "reg.example:5000", "me", "pa:ss"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", fi.Mode().Perm())
	}
	m := readJSON(t, cfgPath)
	if m["currentContext"] != "rootless" || m["psFormat"] != "table {{.ID}}" || m["proxies"] == nil {
		t.Errorf("other keys not kept: %v", m)
	}
	auths := m["auths"].(map[string]any)
	other := auths["other.example"].(map[string]any)
	if other["auth"] != "b3RoZXI6cGFzcw==" || other["email"] != "x@y" {
		t.Errorf("other registry's entry changed: %v", other)
	}
	if got := auths["reg.example:5000"].(map[string]any)["auth"]; got != base64.StdEncoding.EncodeToString([]byte("me:pa:ss")) {
		t.Errorf("auth = %v", got)
	}
	if c := resolve(t, "reg.example:5000/app:1"); c.Username != "me" || c.Password != "pa:ss" {
		t.Errorf("keychain resolved %+v", c)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("leftover files in %s: %v", dir, ents)
	}

	removed, err := RemoveCredentials(dir, "https://reg.example:5000")
	if err != nil || !removed {
		t.Fatalf("RemoveCredentials = %v, %v", removed, err)
	}
	m = readJSON(t, cfgPath)
	auths = m["auths"].(map[string]any)
	if _, ok := auths["reg.example:5000"]; ok {
		t.Error("entry still there after logout")
	}
	if _, ok := auths["other.example"]; !ok || m["currentContext"] != "rootless" {
		t.Errorf("logout lost other keys: %v", m)
	}
	if removed, err := RemoveCredentials(dir, "reg.example:5000"); err != nil || removed {
		t.Errorf("second RemoveCredentials = %v, %v", removed, err)
	}
}

func TestSaveCredentialsNewFileAndSymlink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "docker")
	if err := SaveCredentials(dir, "docker.io", "hubuser", "pw"); err != nil {
		t.Fatal(err)
	}
	m := readJSON(t, filepath.Join(dir, "config.json"))
	if _, ok := m["auths"].(map[string]any)["https://index.docker.io/v1/"]; !ok {
		t.Errorf("Docker Hub entry not under its legacy key: %v", m)
	}

	// A config.json that is a symlink stays one; its target is updated.
	real := filepath.Join(t.TempDir(), "real.json")
	if err := os.WriteFile(real, []byte(`{"detachKeys":"ctrl-x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	linkDir := t.TempDir()
	if err := os.Symlink(real, filepath.Join(linkDir, "config.json")); err != nil {
		t.Fatal(err)
	}
	if err := SaveCredentials(linkDir, "reg.example", "u", "p"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(linkDir, "config.json")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("config.json is no longer a symlink: %v %v", fi, err)
	}
	m = readJSON(t, real)
	if m["detachKeys"] != "ctrl-x" || m["auths"] == nil {
		t.Errorf("target not updated in place: %v", m)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "config.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SaveCredentials(bad, "reg.example", "u", "p"); err == nil {
		t.Error("a corrupt config was overwritten")
	}
}

// fakeHelper installs docker-credential-NAME, a shell script keeping
// credentials as files in store/, on PATH; it logs each action.
func fakeHelper(t *testing.T, helperName string) (store string) {
	t.Helper()
	bin := t.TempDir()
	store = t.TempDir()
	script := `#!/bin/sh
store='` + store + `'
echo "$1" >> "$store/log"
case "$1" in
store)
	in=$(cat)
	url=$(printf '%s' "$in" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
	printf '%s' "$in" > "$store/$(printf '%s' "$url" | tr -c 'A-Za-z0-9' '_')"
	;;
get|erase)
	url=$(cat)
	f="$store/$(printf '%s' "$url" | tr -c 'A-Za-z0-9' '_')"
	if [ ! -f "$f" ]; then echo "credentials not found in native keychain"; exit 1; fi
	if [ "$1" = get ]; then cat "$f"; else rm "$f"; fi
	;;
*) exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-"+helperName), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return store
}

func TestSaveCredentialsWithHelpers(t *testing.T) {
	tests := []struct {
		name   string
		config string
		helper string // the one that must get the secret
	}{
		{"credsStore", `{"credsStore":"strata-a"}`, "strata-a"},
		{"credHelpers wins over credsStore", `{"credsStore":"strata-a","credHelpers":{"reg.example:5000":"strata-b"}}`, "strata-b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stores := map[string]string{"strata-a": fakeHelper(t, "strata-a"), "strata-b": fakeHelper(t, "strata-b")}
			dir := t.TempDir()
			t.Setenv("DOCKER_CONFIG", dir)
			t.Setenv("HOME", t.TempDir())
			cfgPath := filepath.Join(dir, "config.json")
			if err := os.WriteFile(cfgPath, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := SaveCredentials(dir, "reg.example:5000", "me", "secret-pw"); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(cfgPath)
			if strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte("me:secret-pw"))) || strings.Contains(string(b), "secret-pw") {
				t.Errorf("secret written to config.json although a helper serves the registry:\n%s", b)
			}
			m := readJSON(t, cfgPath)
			if entry, ok := m["auths"].(map[string]any)["reg.example:5000"]; !ok || len(entry.(map[string]any)) != 0 {
				t.Errorf("auths entry = %v, want an empty one", entry)
			}
			kept, _ := os.ReadFile(filepath.Join(stores[tc.helper], "reg_example_5000"))
			if !strings.Contains(string(kept), `"Secret":"secret-pw"`) {
				t.Fatalf("helper %s holds %q", tc.helper, kept)
			}
			for h, s := range stores {
				if h != tc.helper {
					if _, err := os.Stat(filepath.Join(s, "log")); err == nil {
						t.Errorf("helper %s was run", h)
					}
				}
			}
			// Pulls find the credentials through the helper.
			if c := resolve(t, "reg.example:5000/app:1"); c.Username != "me" || c.Password != "secret-pw" {
				t.Errorf("keychain resolved %+v", c)
			}

			removed, err := RemoveCredentials(dir, "reg.example:5000")
			if err != nil || !removed {
				t.Fatalf("RemoveCredentials = %v, %v", removed, err)
			}
			if _, err := os.Stat(filepath.Join(stores[tc.helper], "reg_example_5000")); !os.IsNotExist(err) {
				t.Errorf("helper still holds the credentials: %v", err)
			}
			if _, ok := readJSON(t, cfgPath)["auths"].(map[string]any)["reg.example:5000"]; ok {
				t.Error("auths entry kept after logout")
			}
		})
	}
}

func TestDockerConfigDir(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", "/somewhere")
	if d, err := DockerConfigDir(); err != nil || d != "/somewhere" {
		t.Errorf("DockerConfigDir = %q, %v", d, err)
	}
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("HOME", "/home/u")
	if d, err := DockerConfigDir(); err != nil || d != "/home/u/.docker" {
		t.Errorf("DockerConfigDir = %q, %v", d, err)
	}
}
