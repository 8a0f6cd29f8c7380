package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/cgroups"
	"github.com/strata-build/strata/netns"
	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// Options are what `strata run` asks for.
type Options struct {
	Name  string // "" picks one
	Image string
	Pull  registry.Options // for an image not in the local store

	// Entrypoint replaces the image's when not nil (an empty slice clears
	// it, and then the image's CMD is not used either, as in Docker).
	Entrypoint []string
	// Cmd replaces the image's CMD when not empty.
	Cmd        []string
	Env        []string // K=V, added to (and overriding) the image's
	WorkingDir string   // "" keeps the image's
	User       string   // "" keeps the image's
	Hostname   string   // "" is the ID's first 12 digits (the host's name with host networking)

	Tty, OpenStdin, Init, ReadOnly, AutoRemove bool

	Network   netns.Mode // "" is bridge
	Ports     []netns.PortMapping
	Mounts    []MountSpec
	Resources cgroups.Resources

	StopSignal  string // "" keeps the image's STOPSIGNAL, else SIGTERM
	StopTimeout int    // seconds; 0 is DefaultStopTimeout
}

// Create resolves the image (from the local store, else pulling it),
// unpacks its layers, and makes the container in state created. Named
// volumes are created when missing (not yet filled: that happens when the
// container starts).
func (s *Store) Create(ctx context.Context, o Options) (*Container, error) {
	if o.Name != "" && !isName(o.Name) {
		return nil, fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", o.Name)
	}
	if o.Network == "" {
		o.Network = netns.ModeBridge
	}
	if len(o.Ports) > 0 && o.Network != netns.ModeBridge {
		// Docker ignores them with a warning; refusing says more.
		return nil, fmt.Errorf("published ports need the bridge network, not %s", o.Network)
	}
	if o.StopSignal != "" {
		if _, err := ParseSignal(o.StopSignal); err != nil {
			return nil, err
		}
	}
	img, err := s.images.Resolve(ctx, o.Image, o.Pull)
	if err != nil {
		return nil, err
	}
	layers, err := s.unpack(ctx, img)
	if err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	cfg, err := makeConfig(id, o, img)
	if err != nil {
		return nil, err
	}
	cfg.Layers = layers
	for i := range cfg.Mounts {
		m := &cfg.Mounts[i]
		if m.Type != MountVolume {
			continue
		}
		if _, _, err := s.ensureVolume(ctx, m.Source, m.Anonymous); err != nil {
			return nil, err
		}
	}
	c, err := s.place(ctx, cfg)
	if err != nil {
		// Anonymous volumes made above belong to nobody now.
		for _, m := range cfg.Mounts {
			if m.Anonymous {
				_ = s.removeVolume(ctx, m.Source, false)
			}
		}
		return nil, err
	}
	return c, nil
}

// unpack makes a snapshot of each of img's layers (keyed by diffID, shared
// with the builder) and returns their keys, base first.
func (s *Store) unpack(ctx context.Context, img *registry.Image) ([]string, error) {
	var keys []string
	for _, l := range img.Layers {
		// A layer built here is read from the build's snapshot.
		if snap, ok := s.images.SnapshotOf(l.DiffID); ok {
			keys = append(keys, snap.Key)
			continue
		}
		key := l.DiffID.Hex
		if _, ok := s.snaps.Get(key); !ok {
			rc, err := s.images.OpenLayer(ctx, l)
			if err != nil {
				return nil, err
			}
			_, err = s.snaps.Unpack(ctx, key, rc)
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("unpacking layer %s: %w", l.Digest, err)
			}
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// lowers returns the snapshots of cfg's layers, top first.
func (s *Store) lowers(cfg *Config) ([]snapshot.Snapshot, error) {
	out := make([]snapshot.Snapshot, 0, len(cfg.Layers))
	for _, k := range slices.Backward(cfg.Layers) {
		snap, ok := s.snaps.Get(k)
		if !ok {
			return nil, fmt.Errorf("layer snapshot %.12s of the container's image is gone (removed by a cleanup?)", k)
		}
		out = append(out, snap)
	}
	return out, nil
}

// makeConfig computes what to run from the options and the image config.
func makeConfig(id string, o Options, img *registry.Image) (Config, error) {
	var ic v1.Config
	if img.Config != nil {
		ic = img.Config.Config
	}
	cfg := Config{
		ID:          id,
		Name:        o.Name,
		Created:     time.Now().UTC(),
		Image:       o.Image,
		ImageDigest: img.Digest.String(),
		WorkingDir:  ic.WorkingDir,
		User:        ic.User,
		Tty:         o.Tty,
		OpenStdin:   o.OpenStdin,
		Init:        o.Init,
		ReadOnly:    o.ReadOnly,
		AutoRemove:  o.AutoRemove,
		Network:     o.Network,
		Ports:       o.Ports,
		Resources:   o.Resources,
		StopSignal:  ic.StopSignal,
		StopTimeout: o.StopTimeout,
	}
	if o.StopSignal != "" {
		cfg.StopSignal = o.StopSignal
	}
	if o.WorkingDir != "" {
		if !path.IsAbs(o.WorkingDir) {
			return cfg, fmt.Errorf("the working directory %q is not an absolute path", o.WorkingDir)
		}
		cfg.WorkingDir = o.WorkingDir
	}
	if o.User != "" {
		cfg.User = o.User
	}

	entrypoint, cmd := ic.Entrypoint, ic.Cmd
	if o.Entrypoint != nil {
		entrypoint, cmd = o.Entrypoint, nil
	}
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	cfg.Args = append(slices.Clone(entrypoint), cmd...)
	if len(cfg.Args) == 0 {
		return cfg, errors.New("no command specified: the image has no ENTRYPOINT or CMD and none was given")
	}

	cfg.Hostname = o.Hostname
	if cfg.Hostname == "" {
		cfg.Hostname = id[:12]
		if o.Network == netns.ModeHost {
			if h, err := os.Hostname(); err == nil {
				cfg.Hostname = h
			}
		}
	}
	env := []string{"HOSTNAME=" + cfg.Hostname}
	env = mergeEnv(env, ic.Env)
	if o.Tty {
		env = mergeEnv(env, []string{"TERM=xterm"})
	}
	env = mergeEnv(env, o.Env)
	if !hasKey(env, "PATH") {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	cfg.Env = env

	mounts := slices.Clone(o.Mounts)
	for _, m := range mounts {
		if !path.IsAbs(m.Destination) || path.Clean(m.Destination) == "/" {
			return cfg, fmt.Errorf("invalid mount destination %q: an absolute path other than /", m.Destination)
		}
	}
	// The image's VOLUMEs not covered by a mount get anonymous volumes.
	var vols []string
	for v := range ic.Volumes {
		vols = append(vols, v)
	}
	slices.Sort(vols)
	for _, v := range vols {
		dst := path.Clean("/" + v)
		if dst == "/" || slices.ContainsFunc(mounts, func(m MountSpec) bool { return path.Clean(m.Destination) == dst }) {
			continue
		}
		mounts = append(mounts, MountSpec{Type: MountVolume, Destination: dst, Anonymous: true})
	}
	anon := 0
	for i := range mounts {
		m := &mounts[i]
		m.Destination = path.Clean(m.Destination)
		if m.Type == MountVolume && m.Source == "" {
			m.Anonymous = true
			m.Source = fmt.Sprintf("%s-%d", id, anon)
			anon++
		}
	}
	// Parents before children, so a mount inside another one lands on it.
	slices.SortStableFunc(mounts, func(a, b MountSpec) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	cfg.Mounts = mounts
	return cfg, nil
}

// mergeEnv returns env with add's variables set, later ones winning.
func mergeEnv(env, add []string) []string {
	out := slices.Clone(env)
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool { return e == k || strings.HasPrefix(e, k+"=") })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

func hasKey(env []string, k string) bool {
	return slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
}

// place makes the container's directory under a temporary name and
// renames it into place under the global lock, once its name is known to
// be free.
func (s *Store) place(ctx context.Context, cfg Config) (*Container, error) {
	tmp, err := os.MkdirTemp(s.containersDir(), ".tmp-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = removeTree(tmp)
		}
	}()
	upper, work := upperDirs(tmp)
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		// The upper dir's mode becomes the mode of the container's /.
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"hosts", "resolv.conf", "container.log"} {
		if err := os.WriteFile(filepath.Join(tmp, f), nil, 0o644); err != nil {
			return nil, err
		}
	}
	if err := writeJSON(statePath(tmp), &State{Status: StatusCreated}); err != nil {
		return nil, err
	}

	unlock, err := lockFile(ctx, s.globalLock())
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	taken := map[string]bool{}
	for _, c := range all {
		taken[c.Config.Name] = true
	}
	if cfg.Name == "" {
		cfg.Name = randomName(taken)
	} else if taken[cfg.Name] {
		return nil, fmt.Errorf("the container name %q is already in use: remove that container or choose another name", cfg.Name)
	}
	if err := writeJSON(configPath(tmp), &cfg); err != nil {
		return nil, err
	}
	dir := s.dir(cfg.ID)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	ok = true
	return &Container{Config: cfg, State: State{Status: StatusCreated}, Dir: dir}, nil
}
