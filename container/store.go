package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/netns"
	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// Store is the containers and volumes under one state root.
type Store struct {
	root   string
	images *registry.Store
	snaps  *snapshot.Store
}

// ErrNotFound is wrapped by errors about a container or volume that does
// not exist.
var ErrNotFound = errors.New("not found")

// Open opens the container store of the state root (see the package doc).
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("container: no state root given")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(abs, ",:") {
		// The root ends up in overlay mount options.
		return nil, fmt.Errorf("container: state root %q contains ',' or ':'", abs)
	}
	for _, d := range []string{"containers", "volumes"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("container: %w", err)
		}
	}
	images, err := registry.OpenStore(abs)
	if err != nil {
		return nil, err
	}
	snaps, err := snapshot.Open(filepath.Join(abs, "snapshots"))
	if err != nil {
		return nil, err
	}
	return &Store{root: abs, images: images, snaps: snaps}, nil
}

// Root is the state root.
func (s *Store) Root() string { return s.root }

// Images is the image store the containers' images come from.
func (s *Store) Images() *registry.Store { return s.images }

func (s *Store) containersDir() string   { return filepath.Join(s.root, "containers") }
func (s *Store) dir(id string) string    { return filepath.Join(s.containersDir(), id) }
func (s *Store) netConfig() netns.Config { return netns.Config{StateDir: filepath.Join(s.root, "net")} }
func (s *Store) globalLock() string      { return filepath.Join(s.containersDir(), ".lock") }
func cgroupName(id string) string        { return "strata/" + id }
func configPath(dir string) string       { return filepath.Join(dir, "config.json") }
func statePath(dir string) string        { return filepath.Join(dir, "state.json") }
func lockPath(dir string) string         { return filepath.Join(dir, "lock") }
func logPath(dir string) string          { return filepath.Join(dir, "container.log") }
func upperDirs(dir string) (string, string) {
	return filepath.Join(dir, "rw", "fs"), filepath.Join(dir, "rw", "work")
}

// isID reports whether s is a full container ID.
func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// isName reports whether s is a valid container or volume name (Docker's
// rule: [a-zA-Z0-9][a-zA-Z0-9_.-]*).
func isName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '.' || r == '-')
		if !ok {
			return false
		}
	}
	return true
}

func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// lockFile takes an exclusive flock on path (creating it), polling so that
// ctx can end the wait. The returned function drops it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("container: opening lock: %w", err)
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("container: locking %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// writeJSON replaces name atomically with v.
func writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// load reads one container by full ID, with its state reconciled with
// the processes that actually exist.
func (s *Store) load(id string) (*Container, error) {
	dir := s.dir(id)
	c := &Container{Dir: dir}
	if err := readJSON(configPath(dir), &c.Config); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no such container: %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if err := readJSON(statePath(dir), &c.State); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no such container: %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	reconcile(&c.State)
	return c, nil
}

// reconcile marks a container whose monitor is gone as dead: nobody will
// record its end any more (its processes died with the monitor).
func reconcile(st *State) {
	switch st.Status {
	case StatusRunning, StatusCreated:
		if st.MonitorPid != 0 && !alive(st.MonitorPid, st.MonitorStart) {
			st.Status = StatusDead
			if st.Error == "" {
				st.Error = "the container's monitor process died"
			}
		}
	}
}

// Get finds a container by full ID, unique ID prefix, or name.
func (s *Store) Get(ref string) (*Container, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" {
		return nil, fmt.Errorf("no such container: %q: %w", ref, ErrNotFound)
	}
	if isID(ref) {
		if c, err := s.load(ref); err == nil || !errors.Is(err, ErrNotFound) {
			return c, err
		}
	}
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, c := range all {
		if c.Config.Name == ref {
			return c, nil
		}
	}
	var found *Container
	for _, c := range all {
		if strings.HasPrefix(c.Config.ID, ref) {
			if found != nil {
				return nil, fmt.Errorf("multiple containers match ID prefix %s", ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no such container: %s: %w", ref, ErrNotFound)
	}
	return found, nil
}

// List returns every container, newest first.
func (s *Store) List() ([]*Container, error) {
	ents, err := os.ReadDir(s.containersDir())
	if err != nil {
		return nil, err
	}
	var out []*Container
	for _, e := range ents {
		if !isID(e.Name()) {
			continue
		}
		c, err := s.load(e.Name())
		if err != nil {
			continue // removed meanwhile, or not ours
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Created.After(out[j].Config.Created) })
	return out, nil
}

// updateState changes a container's state under its lock. fn sees the
// state as recorded (not reconciled) and may change it; returning an
// error leaves the file alone.
func (s *Store) updateState(ctx context.Context, id string, fn func(*State) error) (State, error) {
	dir := s.dir(id)
	unlock, err := lockFile(ctx, lockPath(dir))
	if err != nil {
		return State{}, err
	}
	defer unlock()
	return updateLocked(dir, fn)
}

func updateLocked(dir string, fn func(*State) error) (State, error) {
	var st State
	if err := readJSON(statePath(dir), &st); err != nil {
		return st, err
	}
	if err := fn(&st); err != nil {
		return st, err
	}
	return st, writeJSON(statePath(dir), &st)
}

// procStart returns the start time of pid (clock ticks after boot) and
// whether it is a zombie.
func procStart(pid int) (uint64, bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false, err
	}
	// comm (field 2) may hold anything; it ends at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, false, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	var start uint64
	if _, err := fmt.Sscan(f[19], &start); err != nil {
		return 0, false, err
	}
	return start, f[0] == "Z" || f[0] == "X", nil
}

// alive reports whether pid is still the (not zombie) process that started
// at start.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, zombie, err := procStart(pid)
	return err == nil && !zombie && got == start
}

// removeTree removes dir, also overlay work dirs whose mode forbids it.
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// nameWords make Docker-like names (adjective_noun) for unnamed containers.
func nameWords() ([]string, []string) {
	return []string{"amber", "brave", "calm", "dusty", "eager", "fancy", "gentle", "hazy", "icy", "jolly",
			"keen", "lucid", "merry", "noble", "odd", "proud", "quiet", "rapid", "sunny", "tidy", "vivid", "witty"},
		[]string{"agate", "basalt", "chalk", "dolomite", "flint", "gneiss", "granite", "jasper", "marble", "onyx",
			"pumice", "quartz", "shale", "slate", "talc", "tuff", "basin", "delta", "fjord", "mesa"}
}

func randomName(taken map[string]bool) string {
	adj, noun := nameWords()
	var b [4]byte
	for i := 0; i < 50; i++ {
		_, _ = rand.Read(b[:])
		n := adj[int(b[0])%len(adj)] + "_" + noun[int(b[1])%len(noun)]
		if i > 10 {
			n += fmt.Sprintf("%d", int(b[2])%100)
		}
		if !taken[n] {
			return n
		}
	}
	id, _ := newID()
	return "c_" + id[:12]
}
