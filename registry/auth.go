package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// dockerHubKey is the key Docker (and authn.DefaultKeychain) uses for
// Docker Hub's credentials in config.json and credential helpers.
const dockerHubKey = authn.DefaultAuthKey

// ParseRegistry reads a registry as given to login or logout ("host:port",
// "https://host/", "docker.io") and returns it with the key its
// credentials have in the docker config.
func ParseRegistry(server string, insecure []string) (name.Registry, string, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		reg, err := name.NewRegistry(name.DefaultRegistry)
		return reg, dockerHubKey, err
	}
	opts := []name.Option{name.StrictValidation}
	if slices.Contains(insecure, s) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(s, opts...)
	if err != nil || s == "" {
		return name.Registry{}, "", fmt.Errorf("invalid registry %q", server)
	}
	return reg, reg.RegistryStr(), nil
}

// Login checks user and password against server the way docker login
// does: it pings the registry for its authentication challenge, for a
// token registry exchanges the credentials for a token (pull scope on a
// dummy repository), and then requires GET /v2/ with them to succeed. A
// refusal is an *AuthError with Login set. Nothing is stored.
func Login(ctx context.Context, server, user, pass string, o Options) error {
	reg, _, err := ParseRegistry(server, o.Insecure)
	if err != nil {
		return err
	}
	base, done := o.baseTransport()
	defer done()
	rt := newRetryTransport(base)
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})
	scope := reg.Repo("strata-login-check").Scope(transport.PullScope)
	describe := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("logging in to %s: %w", reg, ctx.Err())
		}
		err = describeRemoteError(err, reg.RegistryStr(), o.certsDir())
		var ae *AuthError
		if errors.As(err, &ae) {
			ae.Login = true
		}
		return fmt.Errorf("logging in to %s: %w", reg, err)
	}
	tr, err := transport.NewWithContext(ctx, reg, auth, rt, []string{scope})
	if err != nil {
		return describe(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return describe(err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return describe(err)
	}
	return nil
}

// DockerConfigDir is where the docker config lives: $DOCKER_CONFIG, else
// ~/.docker.
func DockerConfigDir() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating the docker config: %w", err)
	}
	return filepath.Join(home, ".docker"), nil
}

// dockerConfig is config.json kept as raw values, so that keys strata
// does not know survive a rewrite untouched.
type dockerConfig struct {
	path string
	raw  map[string]json.RawMessage
}

func loadDockerConfig(dir string) (*dockerConfig, error) {
	p := filepath.Join(dir, "config.json")
	// Write through a symlink to its target, as docker does, so managed
	// dotfiles stay links.
	if t, err := filepath.EvalSymlinks(p); err == nil {
		p = t
	}
	c := &dockerConfig{path: p, raw: map[string]json.RawMessage{}}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading docker config: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, &c.raw); err != nil {
		return nil, fmt.Errorf("parsing docker config %s: %w", p, err)
	}
	if c.raw == nil {
		c.raw = map[string]json.RawMessage{}
	}
	return c, nil
}

// helper is the credential helper docker would use for key: credHelpers
// first, then credsStore; "" for none.
func (c *dockerConfig) helper(key string) (string, error) {
	var helpers map[string]string
	if v, ok := c.raw["credHelpers"]; ok {
		if err := json.Unmarshal(v, &helpers); err != nil {
			return "", fmt.Errorf("docker config %s: credHelpers: %w", c.path, err)
		}
	}
	if h := helpers[key]; h != "" {
		return h, nil
	}
	var store string
	if v, ok := c.raw["credsStore"]; ok {
		if err := json.Unmarshal(v, &store); err != nil {
			return "", fmt.Errorf("docker config %s: credsStore: %w", c.path, err)
		}
	}
	return store, nil
}

func (c *dockerConfig) auths() (map[string]json.RawMessage, error) {
	a := map[string]json.RawMessage{}
	if v, ok := c.raw["auths"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &a); err != nil {
			return nil, fmt.Errorf("docker config %s: auths: %w", c.path, err)
		}
	}
	return a, nil
}

func (c *dockerConfig) setAuths(a map[string]json.RawMessage) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	c.raw["auths"] = b
	return nil
}

// save writes the config atomically with mode 0600 (it holds secrets).
func (c *dockerConfig) save() error {
	b, err := json.MarshalIndent(c.raw, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding docker config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	return writeAtomicMode(c.path, 0o600, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

func helperProgram(h string) client.ProgramFunc {
	return client.NewShellProgramFunc("docker-credential-" + h)
}

// SaveCredentials stores user and password for server in dir/config.json
// (dir is usually DockerConfigDir()). When the config names a credential
// helper for it (credHelpers, else credsStore) the secret goes to the
// helper and auths gets an empty entry, as docker login does; otherwise
// auths[server].auth holds base64(user:password). Every other key of the
// file is kept.
func SaveCredentials(dir, server, user, pass string) error {
	_, key, err := ParseRegistry(server, nil)
	if err != nil {
		return err
	}
	c, err := loadDockerConfig(dir)
	if err != nil {
		return err
	}
	h, err := c.helper(key)
	if err != nil {
		return err
	}
	auths, err := c.auths()
	if err != nil {
		return err
	}
	entry := map[string]string{}
	if h != "" {
		creds := &credentials.Credentials{ServerURL: key, Username: user, Secret: pass}
		if err := client.Store(helperProgram(h), creds); err != nil {
			return fmt.Errorf("storing credentials with docker-credential-%s: %w", h, err)
		}
	} else {
		entry["auth"] = base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	}
	if auths[key], err = json.Marshal(entry); err != nil {
		return err
	}
	if err := c.setAuths(auths); err != nil {
		return err
	}
	return c.save()
}

// RemoveCredentials forgets server's credentials: its auths entry and, when
// a credential helper serves it, the helper's copy. removed is false when
// there was nothing to forget.
func RemoveCredentials(dir, server string) (removed bool, err error) {
	_, key, err := ParseRegistry(server, nil)
	if err != nil {
		return false, err
	}
	c, err := loadDockerConfig(dir)
	if err != nil {
		return false, err
	}
	h, err := c.helper(key)
	if err != nil {
		return false, err
	}
	if h != "" {
		prog := helperProgram(h)
		if _, err := client.Get(prog, key); err == nil {
			if err := client.Erase(prog, key); err != nil {
				return false, fmt.Errorf("erasing credentials with docker-credential-%s: %w", h, err)
			}
			removed = true
		} else if !credentials.IsErrCredentialsNotFound(err) {
			return false, fmt.Errorf("reading credentials with docker-credential-%s: %w", h, err)
		}
	}
	auths, err := c.auths()
	if err != nil {
		return false, err
	}
	if _, ok := auths[key]; !ok {
		return removed, nil
	}
	delete(auths, key)
	if err := c.setAuths(auths); err != nil {
		return false, err
	}
	return true, c.save()
}
