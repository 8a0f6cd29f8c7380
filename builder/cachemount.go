package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/snapshot"
)

// cacheMountDir is where RUN --mount=type=cache directories live. A
// directory is named by a digest of its id, so no id can name a path
// outside it.
func (r *run) cacheMountDir() string { return filepath.Join(r.b.root, "cache-mounts") }

// cacheMount readies the persistent directory of a RUN --mount=type=cache
// and locks it the way its sharing mode asks. The returned release drops
// the lock once the step is done. Locks are flocks, so they hold across
// strata processes sharing the root.
func (r *run) cacheMount(ctx context.Context, m dockerfile.RunMount, target string) (snapshot.Mount, func(), error) {
	if m.FromStage != nil || m.FromImage != "" {
		return snapshot.Mount{}, nil, errors.New("RUN --mount=type=cache,from=... is not supported")
	}
	id := m.ID
	if id == "" {
		id = target
	}
	base := cache.Key("cache-mount", id)
	dir := r.cacheMountDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return snapshot.Mount{}, nil, err
	}
	var name string
	var lock *os.File
	var err error
	switch m.Sharing {
	case "", "shared":
		name = base
		lock, err = flockFile(ctx, filepath.Join(dir, name+".lock"), unix.LOCK_SH, true)
	case "locked":
		name = base
		lock, err = flockFile(ctx, filepath.Join(dir, name+".lock"), unix.LOCK_EX, true)
	case "private":
		// The first instance nobody holds; a new one when all are busy.
		for n := 0; lock == nil && err == nil; n++ {
			name = base
			if n > 0 {
				name = fmt.Sprintf("%s-%d", base, n)
			}
			lock, err = flockFile(ctx, filepath.Join(dir, name+".lock"), unix.LOCK_EX, false)
		}
	default:
		return snapshot.Mount{}, nil, fmt.Errorf("unknown cache sharing mode %q", m.Sharing)
	}
	if err != nil {
		return snapshot.Mount{}, nil, err
	}
	host := filepath.Join(dir, name)
	r.mu.Lock()
	r.mounts[name] = true
	r.mu.Unlock()
	fill := func(tmp string) error { return r.fillMount(ctx, name, tmp) }
	err = makeCacheDir(host, m, fill)
	if err != nil && ctx.Err() == nil {
		// A cache is only a cache: a seed that cannot be fetched leaves
		// the directory empty rather than failing the step.
		r.info(fmt.Sprintf("WARNING: cache mount %s: not seeded from the imported cache: %v", m.Target, err))
		err = makeCacheDir(host, m, func(string) error { return nil })
	}
	if err != nil {
		lock.Close()
		return snapshot.Mount{}, nil, err
	}
	opts := []string{"rbind"}
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	return snapshot.Mount{Type: "bind", Source: host, Target: target, Options: opts}, func() { lock.Close() }, nil
}

// makeCacheDir creates a cache directory with the owner and mode the mount
// asks for (0:0 and 0755 by default). Like BuildKit, they apply only when
// the directory is first made; it appears whole, by rename.
func makeCacheDir(host string, m dockerfile.RunMount, fill func(dir string) error) error {
	if _, err := os.Lstat(host); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(host), ".tmp-")
	if err != nil {
		return err
	}
	uid, gid, mode := 0, 0, uint32(0o755)
	if m.UID != nil {
		uid = *m.UID
	}
	if m.GID != nil {
		gid = *m.GID
	}
	if m.Mode != nil {
		mode = *m.Mode & 0o7777
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := unix.Chmod(tmp, mode); err != nil { // raw bits: setgid etc. as written
		os.Remove(tmp)
		return err
	}
	// An imported cache (--cache-from, mode=max) seeds a new directory.
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, host); err != nil {
		os.Remove(tmp)
		if _, serr := os.Lstat(host); serr == nil {
			return nil // another build made it first
		}
		return err
	}
	return nil
}

// flockFile opens (creating) path and takes a flock on it. With wait false
// it returns a nil file when the lock is held elsewhere.
func flockFile(ctx context.Context, path string, how int, wait bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !wait {
			f.Close()
			return nil, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
