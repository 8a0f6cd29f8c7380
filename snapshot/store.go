package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// keyLen is how many hex characters of a key name a snapshot directory.
const keyLen = 16

// Store keeps committed snapshots under one root directory:
// ROOT/KEY16/{fs,meta.json} for committed ones, ROOT/tmp/XXXX/{fs,work} for
// active ones. Several processes may share a root.
type Store struct {
	root string
}

type meta struct {
	Key string `json:"key"`
}

// Open opens (creating if needed) the snapshot store at root.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving snapshot root %q: %w", root, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("creating snapshot root: %w", err)
	}
	return &Store{root: abs}, nil
}

// Root returns the absolute store root; lowerdir options made by
// OverlayMount are relative to it.
func (s *Store) Root() string { return s.root }

// normKey turns "sha256:HEX" or "HEX" into lower-case HEX, rejecting
// anything that is not at least keyLen hex characters.
func normKey(key string) (string, error) {
	if i := strings.IndexByte(key, ':'); i >= 0 {
		key = key[i+1:]
	}
	key = strings.ToLower(key)
	if len(key) < keyLen {
		return "", fmt.Errorf("snapshot key %q: too short", key)
	}
	for _, c := range key {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("snapshot key %q: not hex", key)
		}
	}
	return key, nil
}

// Get returns the committed snapshot for key, if there is one.
func (s *Store) Get(key string) (Snapshot, bool) {
	k, err := normKey(key)
	if err != nil {
		return Snapshot{}, false
	}
	return s.get(k)
}

func (s *Store) get(k string) (Snapshot, bool) {
	dir := filepath.Join(s.root, k[:keyLen])
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return Snapshot{}, false
	}
	var m meta
	if json.Unmarshal(b, &m) != nil || m.Key != k {
		return Snapshot{}, false
	}
	return Snapshot{Key: k, Dir: filepath.Join(dir, "fs")}, true
}

// Prepare makes a new, empty active snapshot in the store's tmp dir.
func (s *Store) Prepare(ctx context.Context) (*Active, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "")
	if err != nil {
		return nil, fmt.Errorf("creating active snapshot: %w", err)
	}
	a := &Active{Dir: filepath.Join(tmp, "fs"), Work: filepath.Join(tmp, "work"), tmp: tmp}
	for _, d := range []string{a.Dir, a.Work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			_ = removeTree(tmp)
			return nil, fmt.Errorf("creating active snapshot: %w", err)
		}
		// The upper dir's mode becomes the mode of "/" in the container;
		// do not let the umask decide it.
		if err := os.Chmod(d, 0o755); err != nil {
			_ = removeTree(tmp)
			return nil, fmt.Errorf("creating active snapshot: %w", err)
		}
	}
	return a, nil
}

// Commit moves a into place under key. If key is already committed, a is
// discarded and the existing snapshot returned.
func (s *Store) Commit(ctx context.Context, a *Active, key string) (Snapshot, error) {
	k, err := normKey(key)
	if err != nil {
		return Snapshot{}, err
	}
	unlock, err := s.lock(ctx, k)
	if err != nil {
		return Snapshot{}, err
	}
	defer unlock()
	return s.commitLocked(a, k)
}

func (s *Store) commitLocked(a *Active, k string) (Snapshot, error) {
	if a == nil || a.tmp == "" {
		return Snapshot{}, errors.New("committing snapshot: not an active snapshot of this store")
	}
	if snap, ok := s.get(k); ok {
		if err := s.Abort(a); err != nil {
			return Snapshot{}, err
		}
		return snap, nil
	}
	dir := filepath.Join(s.root, k[:keyLen])
	if _, err := os.Lstat(dir); err == nil {
		// Same KEY16, different key (or a broken leftover without meta).
		if _, rerr := os.Stat(filepath.Join(dir, "meta.json")); rerr == nil {
			return Snapshot{}, fmt.Errorf("committing snapshot %s: %s is taken by another key", k, dir)
		}
		if err := removeTree(dir); err != nil {
			return Snapshot{}, fmt.Errorf("removing broken snapshot %s: %w", dir, err)
		}
	}
	// The work dir is scratch for overlayfs and not part of the layer.
	if err := removeTree(a.Work); err != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %s: removing work dir: %w", k, err)
	}
	if err := writeSynced(filepath.Join(a.tmp, "meta.json"), meta{Key: k}); err != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %s: %w", k, err)
	}
	if err := syncDir(a.tmp); err != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %s: %w", k, err)
	}
	if err := os.Rename(a.tmp, dir); err != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %s: %w", k, err)
	}
	if err := syncDir(s.root); err != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %s: %w", k, err)
	}
	return Snapshot{Key: k, Dir: filepath.Join(dir, "fs")}, nil
}

// Abort removes an active snapshot and everything in it.
func (s *Store) Abort(a *Active) error {
	if a == nil || a.tmp == "" {
		return nil
	}
	if err := removeTree(a.tmp); err != nil {
		return fmt.Errorf("removing active snapshot: %w", err)
	}
	return nil
}

// Unpack makes the snapshot for key from an uncompressed layer tar (OCI
// whiteouts become overlay whiteouts) and reads r to its end, so a caller
// hashing the stream sees all of it. When key is already committed, r is
// not read at all.
func (s *Store) Unpack(ctx context.Context, key string, r io.Reader) (Snapshot, error) {
	k, err := normKey(key)
	if err != nil {
		return Snapshot{}, err
	}
	if snap, ok := s.get(k); ok {
		return snap, nil
	}
	unlock, err := s.lock(ctx, k)
	if err != nil {
		return Snapshot{}, err
	}
	defer unlock()
	// Another process may have unpacked it while we waited.
	if snap, ok := s.get(k); ok {
		return snap, nil
	}
	a, err := s.Prepare(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	if err := Apply(ctx, a.Dir, r, ApplyOptions{Mode: ApplyOverlay}); err != nil {
		_ = s.Abort(a)
		return Snapshot{}, fmt.Errorf("unpacking layer %s: %w", k, err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		_ = s.Abort(a)
		return Snapshot{}, fmt.Errorf("unpacking layer %s: reading trailer: %w", k, err)
	}
	snap, err := s.commitLocked(a, k)
	if err != nil {
		_ = s.Abort(a)
		return Snapshot{}, err
	}
	return snap, nil
}

// lock takes an exclusive flock on ROOT/KEY16.lock, polling so that ctx
// can cancel the wait.
func (s *Store) lock(ctx context.Context, k string) (func(), error) {
	name := filepath.Join(s.root, k[:keyLen]+".lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening snapshot lock: %w", err)
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking snapshot %s: %w", k, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("waiting for snapshot lock %s: %w", k, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
	// Closing the file drops the lock.
	return func() { f.Close() }, nil
}

func writeSynced(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// removeTree is os.RemoveAll that also copes with directories whose mode
// forbids it (overlayfs leaves work/work as d---------, a problem when
// not running with CAP_DAC_OVERRIDE).
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
		// WalkDir reads a directory only after this call, so making it
		// accessible here lets the walk go on below it.
		if werr == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
