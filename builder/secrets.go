package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/snapshot"
)

// Secret is a --secret given to the build: the value comes from a file or
// an environment variable of the strata process. Secrets reach RUN steps
// that ask for them and never a layer, a cache key or the history.
type Secret struct {
	File string
	Env  string
}

// value reads the secret.
func (s Secret) value() ([]byte, error) {
	if s.Env != "" {
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return []byte(v), nil
	}
	return os.ReadFile(s.File)
}

// ParseSecret reads a --secret flag: id=ID[,src=FILE|env=VAR][,type=file|env].
// Without src or env, a variable named ID is used when set, else a file
// named ID, as docker build does.
func ParseSecret(flag string) (string, Secret, error) {
	var id, src, env, typ string
	for _, f := range strings.Split(flag, ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return "", Secret{}, fmt.Errorf("invalid secret %q: want key=value fields", flag)
		}
		switch strings.ToLower(k) {
		case "id":
			id = v
		case "src", "source":
			src = v
		case "env":
			env = v
		case "type":
			typ = v
		default:
			return "", Secret{}, fmt.Errorf("invalid secret %q: unknown field %q", flag, k)
		}
	}
	if id == "" {
		return "", Secret{}, fmt.Errorf("invalid secret %q: id is required", flag)
	}
	switch {
	case typ != "" && typ != "file" && typ != "env":
		return "", Secret{}, fmt.Errorf("invalid secret %q: type must be file or env", flag)
	case src != "" && env != "":
		return "", Secret{}, fmt.Errorf("invalid secret %q: give src or env, not both", flag)
	case typ == "env" && src != "":
		env, src = src, ""
	case typ == "env" && env == "":
		env = id
	case src == "" && env == "":
		if _, ok := os.LookupEnv(id); ok && typ != "file" {
			env = id
		} else {
			src = id
		}
	}
	if src != "" {
		if _, err := os.Stat(src); err != nil {
			return "", Secret{}, fmt.Errorf("secret %s: %w", id, err)
		}
	}
	return id, Secret{File: src, Env: env}, nil
}

// ParseSSH reads an --ssh flag: default | ID | ID=SOCKET. Without a socket,
// SSH_AUTH_SOCK is forwarded.
func ParseSSH(flag string) (string, string, error) {
	id, sock, _ := strings.Cut(flag, "=")
	if id == "" {
		return "", "", fmt.Errorf("invalid --ssh %q", flag)
	}
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return "", "", fmt.Errorf("--ssh %s: SSH_AUTH_SOCK is not set", id)
		}
	}
	fi, err := os.Stat(sock)
	if err != nil {
		return "", "", fmt.Errorf("--ssh %s: %w", id, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return "", "", fmt.Errorf("--ssh %s: %s is not an agent socket (key files are not supported; use ssh-agent)", id, sock)
	}
	return id, sock, nil
}

// secretMount provides a secret to one RUN: as a read-only file at the
// mount's target and/or as an environment variable. A missing secret is
// an error only when the mount says required=true.
func (r *run) secretMount(m dockerfile.RunMount, dir string, n int) ([]snapshot.Mount, []string, error) {
	s, ok := r.o.Secrets[m.ID]
	if !ok {
		if m.Required {
			return nil, nil, fmt.Errorf("secret %s: not provided (use --secret id=%s,src=FILE)", m.ID, m.ID)
		}
		return nil, nil, nil
	}
	data, err := s.value()
	if err != nil {
		return nil, nil, fmt.Errorf("secret %s: %w", m.ID, err)
	}
	var env []string
	if m.Env != "" {
		env = append(env, m.Env+"="+string(data))
	}
	if m.Target == "" {
		return nil, env, nil
	}
	p := filepath.Join(dir, fmt.Sprintf("secret-%d", n))
	mode := uint32(0o400)
	if m.Mode != nil {
		mode = *m.Mode & 0o7777
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return nil, nil, err
	}
	uid, gid := 0, 0
	if m.UID != nil {
		uid = *m.UID
	}
	if m.GID != nil {
		gid = *m.GID
	}
	if err := os.Chown(p, uid, gid); err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(p, os.FileMode(mode)); err != nil {
		return nil, nil, err
	}
	return []snapshot.Mount{{Type: "bind", Source: p, Target: m.Target, Options: []string{"bind", "ro"}}}, env, nil
}

// sshMount forwards an agent socket given with --ssh.
func (r *run) sshMount(m dockerfile.RunMount, n int) ([]snapshot.Mount, []string, error) {
	sock, ok := r.o.SSH[m.ID]
	if !ok {
		if m.Required {
			return nil, nil, fmt.Errorf("ssh agent %s: not provided (use --ssh %s)", m.ID, m.ID)
		}
		return nil, nil, nil
	}
	target := m.Target
	if target == "" {
		target = fmt.Sprintf("/run/buildkit/ssh_agent.%d", n)
	}
	return []snapshot.Mount{{Type: "bind", Source: sock, Target: target, Options: []string{"bind"}}}, []string{"SSH_AUTH_SOCK=" + target}, nil
}
