package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockName is the lock file in ROOT that commands share and Collect takes
// alone.
const lockName = "gc.lock"

// Use takes a shared lock on the store at root and returns the function
// that drops it. Every command that reads or writes the store holds it for
// its whole run, so that Collect, which needs the lock exclusively, never
// removes something a running command uses. Use waits while a Collect runs;
// waiting, when not nil, is called once before it starts to wait. The root
// is created if missing, as opening the stores would.
//
// The lock is an flock on an O_CLOEXEC descriptor: it is not inherited by
// child processes, and it goes away with the process. Do not call Collect
// while holding Use in the same process: flock locks of two descriptors
// conflict even within one process, so it would wait forever.
func Use(ctx context.Context, root string, waiting func()) (release func(), err error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	return lock(ctx, root, unix.LOCK_SH, waiting)
}

// lock takes an flock of kind how (LOCK_SH or LOCK_EX) on ROOT/gc.lock. It
// polls instead of blocking in flock so that ctx can end the wait.
func lock(ctx context.Context, root string, how int, waiting func()) (func(), error) {
	name := filepath.Join(root, lockName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening store lock: %w", err)
	}
	wait := time.Millisecond
	told := false
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", name, err)
		}
		if !told && waiting != nil {
			waiting()
		}
		told = true
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("waiting for store lock %s: %w", name, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
	// Closing the descriptor drops the lock.
	return func() { f.Close() }, nil
}
