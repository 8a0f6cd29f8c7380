package builder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/strata-build/strata/copier"
	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/progress"
	"github.com/strata-build/strata/snapshot"
)

const sandboxHostname = "strata"

// tailLines is how many output lines a failing RUN shows.
const tailLines = 10

func (r *run) execRun(ctx context.Context, s *dockerfile.Stage, id int, step *dockerfile.Step, st *state, a *snapshot.Active) error {
	rs := step.Run
	dir, err := r.scratchDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	spec := exec.Spec{
		SnapshotRoot: r.b.snaps.Root(),
		Root:         snapshot.OverlayMount(st.lowers(), a).Volatile(),
		Hostname:     sandboxHostname,
		Network:      exec.NetworkHost,
		Hosts:        []byte("127.0.0.1\tlocalhost " + sandboxHostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
		TempDir:      dir,
	}
	switch rs.Network {
	case "none":
		spec.Network = exec.NetworkNone
	case "", "default", "host":
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			spec.ResolvConf = b
		}
	default:
		return fmt.Errorf("unsupported network mode %q", rs.Network)
	}
	if rs.Security == "insecure" {
		return fmt.Errorf("RUN --security=insecure is not allowed")
	}
	for i, f := range rs.Files {
		p := filepath.Join(dir, fmt.Sprintf("file-%d", i))
		if err := os.WriteFile(p, f.Data, os.FileMode(f.Mode)); err != nil {
			return err
		}
		if err := os.Chmod(p, os.FileMode(f.Mode)); err != nil {
			return err
		}
		spec.Mounts = append(spec.Mounts, snapshot.Mount{Type: "bind", Source: p, Target: f.Path, Options: []string{"bind", "ro"}})
	}
	var releases []func()
	defer func() {
		for _, f := range releases {
			f()
		}
	}()
	var extraEnv []string
	for i, m := range rs.Mounts {
		var mounts []snapshot.Mount
		var env []string
		var err error
		switch m.Type {
		case "secret":
			mounts, env, err = r.secretMount(m, dir, i)
		case "ssh":
			mounts, env, err = r.sshMount(m, i)
		default:
			mounts, err = r.runMount(ctx, m, dir, &releases)
		}
		if err != nil {
			return err
		}
		spec.Mounts = append(spec.Mounts, mounts...)
		extraEnv = append(extraEnv, env...)
	}

	out := &stepOutput{emit: func(line string) {
		r.o.Progress.Event(progress.Event{Kind: progress.Log, Time: time.Now(), Stage: stageName(s), ID: id, Text: line, File: step.Loc.File, Line: step.Loc.Line})
	}}
	spec.Process = exec.Process{
		Args:   rs.Args,
		Env:    append(append(withDefaultPath(step.Env), rs.ProxyEnv...), extraEnv...),
		Cwd:    rs.Cwd,
		User:   step.User,
		Stdout: out,
		Stderr: out,
	}
	if rs.Stdin != nil {
		spec.Process.Stdin = bytes.NewReader(rs.Stdin)
	}
	code, err := exec.Run(ctx, spec)
	out.flush()
	if err != nil {
		return err
	}
	targets := []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}
	for _, m := range spec.Mounts {
		targets = append(targets, m.Target)
	}
	pruneCopyUps(a.Dir, st.lowers(), targets)
	if code != 0 {
		return &ExitError{Code: code, Tail: out.tail()}
	}
	return nil
}

// withDefaultPath adds the default PATH when the image sets none, as
// BuildKit does for RUN.
func withDefaultPath(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	return append(append([]string(nil), env...), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// runMount turns one RUN --mount into sandbox mounts.
func (r *run) runMount(ctx context.Context, m dockerfile.RunMount, dir string, releases *[]func()) ([]snapshot.Mount, error) {
	target := m.Target
	if !path.IsAbs(target) {
		target = "/" + target
	}
	switch m.Type {
	case "tmpfs":
		opts := []string{"nosuid", "nodev"}
		if m.Size > 0 {
			opts = append(opts, fmt.Sprintf("size=%d", m.Size))
		}
		return []snapshot.Mount{{Type: "tmpfs", Source: "tmpfs", Target: target, Options: opts}}, nil
	case "cache":
		mt, release, err := r.cacheMount(ctx, m, target)
		if err != nil {
			return nil, err
		}
		*releases = append(*releases, release)
		return []snapshot.Mount{mt}, nil
	case "bind", "":
		return r.bindMount(ctx, m, target, dir)
	}
	return nil, fmt.Errorf("RUN --mount=type=%s is not supported yet", m.Type)
}

// bindMount mounts a path of the context, a stage or an image. Read-only
// unless the mount says rw; then writes go to a scratch upper dir and are
// thrown away with it, as in BuildKit, so neither the user's files nor a
// stage's snapshots can change.
func (r *run) bindMount(ctx context.Context, m dockerfile.RunMount, target, dir string) ([]snapshot.Mount, error) {
	src := m.Source
	if src == "" {
		src = "/"
	}
	var from *state
	switch {
	case m.FromStage != nil:
		st, err := r.stageResult(m.FromStage)
		if err != nil {
			return nil, err
		}
		from = st.clone()
		if err := r.materialize(ctx, from); err != nil {
			return nil, err
		}
	case m.FromImage != "":
		img, err := r.image(ctx, m.FromImage)
		if err != nil {
			return nil, err
		}
		from = &state{}
		for _, l := range img.Layers {
			snap, err := r.unpack(ctx, l)
			if err != nil {
				return nil, err
			}
			from.layers = append(from.layers, layerRef{snap: snap})
		}
	}
	var upper *snapshot.Active
	if !m.ReadOnly {
		u, err := os.MkdirTemp(dir, "bind-")
		if err != nil {
			return nil, err
		}
		upper = &snapshot.Active{Dir: filepath.Join(u, "upper"), Work: filepath.Join(u, "work")}
		if err := os.Mkdir(upper.Dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Mkdir(upper.Work, 0o700); err != nil {
			return nil, err
		}
	}
	var mt snapshot.Mount
	if from == nil {
		host, err := copier.ResolveIn(r.ctx.dir, src)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(host)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() && upper != nil {
			// A writable file: bind a private copy.
			data, err := os.ReadFile(host)
			if err != nil {
				return nil, err
			}
			host = filepath.Join(upper.Dir, filepath.Base(host))
			if err := os.WriteFile(host, data, fi.Mode().Perm()); err != nil {
				return nil, err
			}
			upper = nil
		}
		if upper == nil || !fi.IsDir() {
			opts := []string{"rbind"}
			if m.ReadOnly {
				opts = append(opts, "ro")
			}
			return []snapshot.Mount{{Type: "bind", Source: host, Target: target, Options: opts}}, nil
		}
		mt = snapshot.OverlayMount([]snapshot.Snapshot{{Dir: host}}, upper).Volatile()
	} else {
		mt = snapshot.OverlayMount(from.lowers(), upper).Volatile()
		if clean := path.Clean("/" + src); clean != "/" {
			mt.Subdir = clean
		}
	}
	mt.Target = target
	return []snapshot.Mount{mt}, nil
}

// mountKey is what a RUN mount contributes to the step's cache key. Cache
// and tmpfs mounts never do: their content is not part of the result.
func (r *run) mountKey(ctx context.Context, m dockerfile.RunMount) ([]string, error) {
	k := []string{"mount", m.Type, m.Target, m.Source, fmt.Sprint(m.ReadOnly)}
	switch {
	case m.Type == "cache" || m.Type == "tmpfs":
		return k, nil
	case m.FromStage != nil:
		st, err := r.stageResult(m.FromStage)
		if err != nil {
			return nil, err
		}
		return append(k, st.key), nil
	case m.FromImage != "":
		img, err := r.image(ctx, m.FromImage)
		if err != nil {
			return nil, err
		}
		return append(k, img.Digest.String()), nil
	case m.Type == "bind" || m.Type == "":
		src := m.Source
		if src == "" {
			src = "."
		}
		sum, err := copier.Checksum(ctx, copier.Request{SrcRoot: r.ctx.dir, Sources: []string{src}, Ignore: r.ctx.ignore, FromContext: true, Digests: r.digests})
		if err != nil {
			return nil, err
		}
		return append(k, sum), nil
	}
	return k, nil
}

// stepOutput splits a RUN's output into lines for progress and keeps the
// last few for the error message.
type stepOutput struct {
	mu    sync.Mutex
	emit  func(string)
	buf   []byte
	lines []string
}

var _ io.Writer = (*stepOutput)(nil)

func (o *stepOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	for {
		i := bytes.IndexByte(o.buf, '\n')
		if i < 0 {
			break
		}
		o.line(string(o.buf[:i]))
		o.buf = o.buf[i+1:]
	}
	return len(p), nil
}

func (o *stepOutput) line(s string) {
	o.emit(s)
	o.lines = append(o.lines, s)
	if len(o.lines) > tailLines {
		o.lines = o.lines[len(o.lines)-tailLines:]
	}
}

func (o *stepOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.buf) > 0 {
		o.line(string(o.buf))
		o.buf = nil
	}
}

func (o *stepOutput) tail() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.lines...)
}
