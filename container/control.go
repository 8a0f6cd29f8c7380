package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/cgroups"
	"github.com/strata-build/strata/netns"
)

// running returns c's PID 1 when c runs and the process is still the one
// recorded.
func running(c *Container) (int, bool) {
	if c.State.Status != StatusRunning || !alive(c.State.Pid, c.State.PidStart) {
		return 0, false
	}
	return c.State.Pid, true
}

// Signal sends sig to the container's PID 1 (docker kill). Without
// --init, PID 1 ignores signals it has no handler for, except SIGKILL,
// which ends the whole container.
func (s *Store) Signal(ctx context.Context, ref string, sig syscall.Signal) error {
	c, err := s.Get(ref)
	if err != nil {
		return err
	}
	pid, ok := running(c)
	if !ok {
		return notRunning(c)
	}
	if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signalling container %s: %w", c.Config.Name, err)
	}
	return nil
}

// Stop sends the container's stop signal (STOPSIGNAL, else SIGTERM),
// waits up to timeout for it to end (negative: the container's own
// timeout, DefaultStopTimeout unless set), then kills it, and returns
// once its monitor has recorded the end. Stopping a container that does
// not run is not an error, as in Docker.
func (s *Store) Stop(ctx context.Context, ref string, timeout time.Duration) error {
	c, err := s.Get(ref)
	if err != nil {
		return err
	}
	pid, ok := running(c)
	if !ok {
		_, err := s.waitRecorded(ctx, c.ID(), 30*time.Second)
		return err
	}
	if timeout < 0 {
		timeout = time.Duration(c.Config.StopTimeout) * time.Second
		if c.Config.StopTimeout == 0 {
			timeout = DefaultStopTimeout * time.Second
		}
	}
	sig := syscall.SIGTERM
	if c.Config.StopSignal != "" {
		if sig, err = ParseSignal(c.Config.StopSignal); err != nil {
			return err
		}
	}
	if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	if ended, err := s.waitEnded(ctx, c, timeout); err != nil || ended {
		if err == nil {
			_, err = s.waitRecorded(ctx, c.ID(), 30*time.Second)
		}
		return err
	}
	if err := s.kill(ctx, c); err != nil {
		return err
	}
	_, err = s.waitRecorded(ctx, c.ID(), 30*time.Second)
	return err
}

// kill ends every process of the container: SIGKILL to PID 1 takes the
// PID namespace down; the cgroup catches anything else.
func (s *Store) kill(ctx context.Context, c *Container) error {
	if pid, ok := running(c); ok {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	if c.State.Cgroup != "" {
		if g, err := cgroups.Load(c.State.Cgroup); err == nil {
			return g.Kill(ctx)
		}
	}
	return nil
}

// waitEnded waits until c's PID 1 is gone, at most d.
func (s *Store) waitEnded(ctx context.Context, c *Container, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		if !alive(c.State.Pid, c.State.PidStart) {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return false, err
		}
	}
}

// waitRecorded waits until the container's state no longer says running
// (its monitor recorded the end, or died), at most d.
func (s *Store) waitRecorded(ctx context.Context, id string, d time.Duration) (*Container, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := s.load(id)
		if err != nil {
			return nil, err
		}
		if c.State.Status != StatusRunning && !(c.State.Status == StatusCreated && c.State.MonitorPid != 0) {
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("container %s: its monitor did not record the end within %v", c.Config.Name, d)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return c, err
		}
	}
}

// Wait waits for the container to end and returns its final state.
func (s *Store) Wait(ctx context.Context, ref string) (*Container, error) {
	c, err := s.Get(ref)
	if err != nil {
		return nil, err
	}
	return s.waitRecorded(ctx, c.ID(), 1<<62)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RemoveOptions are rm's flags.
type RemoveOptions struct {
	Force   bool // kill a running container first
	Volumes bool // remove its anonymous volumes too (named ones stay)
}

// Remove removes a container: its writable layer, log and state, and
// anything a dead monitor left behind (cgroup, network). A running
// container needs Force.
func (s *Store) Remove(ctx context.Context, ref string, o RemoveOptions) error {
	c, err := s.Get(ref)
	if err != nil {
		return err
	}
	id := c.ID()
	if c.State.Status == StatusRunning || c.State.Status == StatusCreated && c.State.MonitorPid != 0 {
		if !o.Force {
			return fmt.Errorf("cannot remove container %s: it is running: stop it first, or use rm -f", c.Config.Name)
		}
		if err := s.kill(ctx, c); err != nil {
			return err
		}
		if c, err = s.waitRecorded(ctx, id, 30*time.Second); err != nil {
			return err
		}
	}
	unlock, err := lockFile(ctx, lockPath(c.Dir))
	if err != nil {
		return err
	}
	defer unlock()
	// Another remover may have won while we waited.
	if _, err := os.Stat(configPath(c.Dir)); err != nil {
		return fmt.Errorf("no such container: %s: %w", ref, ErrNotFound)
	}
	if c, err = s.load(id); err != nil {
		return err
	}
	if c.State.Status == StatusRunning {
		return fmt.Errorf("cannot remove container %s: it was started again", c.Config.Name)
	}
	if _, err := updateLocked(c.Dir, func(st *State) error {
		st.Status = StatusRemoving
		return nil
	}); err != nil {
		return err
	}
	// Leftovers of a monitor that died.
	var errs []error
	if g, err := cgroups.Load(cgroupName(id)); err == nil {
		errs = append(errs, g.Kill(ctx), g.Delete(ctx))
	}
	if c.Config.Network == netns.ModeBridge {
		errs = append(errs, netns.Teardown(ctx, s.netConfig(), id))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	gunlock, err := lockFile(ctx, s.globalLock())
	if err != nil {
		return err
	}
	trash, err := os.MkdirTemp(s.containersDir(), ".trash-")
	if err == nil {
		err = os.Rename(c.Dir, filepath.Join(trash, "c"))
	}
	gunlock()
	if err != nil {
		return err
	}
	if err := removeTree(trash); err != nil {
		return err
	}
	if o.Volumes {
		for _, m := range c.Config.Mounts {
			if m.Type == MountVolume && m.Anonymous {
				if err := s.removeVolume(ctx, m.Source, false); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
			}
		}
	}
	return nil
}

// Stats reads the container's resource usage from its cgroup.
func (s *Store) Stats(ref string) (*Container, cgroups.Stats, error) {
	c, err := s.Get(ref)
	if err != nil {
		return nil, cgroups.Stats{}, err
	}
	if _, ok := running(c); !ok || c.State.Cgroup == "" {
		return c, cgroups.Stats{}, notRunning(c)
	}
	g, err := cgroups.Load(c.State.Cgroup)
	if err != nil {
		return c, cgroups.Stats{}, err
	}
	st, err := g.Stats()
	return c, st, err
}
