package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// killMethod is how Kill stops the group's processes from forking away
// while it kills them; every method ends with a SIGKILL loop that waits
// for cgroup.procs to be empty.
type killMethod int

const (
	killAuto       killMethod = iota
	killCgroupKill            // v2 cgroup.kill (Linux 5.14+): the kernel kills all, fork races included
	killFreeze                // freeze (v1 freezer or v2 cgroup.freeze), SIGKILL everyone, thaw
	killSignal                // SIGKILL loop only
)

// Kill sends SIGKILL to every process in the group and returns once the
// group is empty. It uses cgroup.kill when the group has a cgroup2
// directory that offers it, else freezes the group first (when a freezer is
// available) so nothing forks between listing and killing. A process the
// kernel cannot end (stuck in uninterruptible sleep) keeps Kill waiting
// until ctx is done.
func (g *Group) Kill(ctx context.Context) error {
	return g.kill(ctx, killAuto)
}

func (g *Group) kill(ctx context.Context, how killMethod) error {
	// An empty group cannot fork: nothing to freeze or kill. This also
	// makes Kill of a deleted group a no-op.
	if pids, err := g.pids(); err != nil || len(pids) == 0 {
		return err
	}
	if how == killAuto {
		switch {
		case g.v2dir != "" && exists(filepath.Join(g.v2dir, "cgroup.kill")):
			how = killCgroupKill
		case g.canFreeze():
			how = killFreeze
		default:
			how = killSignal
		}
	}
	// The first step only makes the loop in waitEmpty short; should it
	// fail, that loop still kills everything, so its error is reported
	// only if the group cannot be emptied.
	var first error
	switch how {
	case killCgroupKill:
		first = writeFile(filepath.Join(g.v2dir, "cgroup.kill"), "1")
	case killFreeze:
		var thaw func() error
		if thaw, first = g.freeze(ctx); first == nil {
			_, serr := g.signalAll()
			// Frozen v1 tasks only die once thawed.
			first = errors.Join(serr, thaw())
		}
	}
	if err := g.waitEmpty(ctx); err != nil {
		return errors.Join(first, err)
	}
	return nil
}

// waitEmpty SIGKILLs whatever is still in the group until nothing is.
func (g *Group) waitEmpty(ctx context.Context) error {
	wait := time.Millisecond
	for {
		n, err := g.signalAll()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if err := sleep(ctx, wait); err != nil {
			pids, _ := g.pids()
			return fmt.Errorf("cgroups: kill %s: processes %v still alive: %w", g.name, pids, err)
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// pids is every process in any of the group's directories; a directory
// that is gone holds none.
func (g *Group) pids() ([]int, error) {
	var all []int
	for _, d := range g.dirs {
		pids, err := readPids(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		all = append(all, pids...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// signalAll SIGKILLs every process in the group and returns how many it
// found. A pid read from cgroup.procs may exit and be reused by an
// unrelated process before the signal, so each is pinned with a pidfd and
// signalled only if the group still lists it after the pidfd was opened.
func (g *Group) signalAll() (int, error) {
	pids, err := g.pids()
	if err != nil || len(pids) == 0 {
		return 0, err
	}
	fds := make(map[int]int, len(pids))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	noPidfd := false
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		switch {
		case err == nil:
			fds[pid] = fd
		case errors.Is(err, unix.ENOSYS):
			noPidfd = true // before Linux 5.3: plain kill(2) below
		case errors.Is(err, unix.ESRCH):
		default:
			return 0, fmt.Errorf("cgroups: pidfd_open %d: %w", pid, err)
		}
	}
	still, err := g.pids()
	if err != nil {
		return 0, err
	}
	for _, pid := range still {
		fd, ok := fds[pid]
		switch {
		case ok:
			err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		case noPidfd:
			err = unix.Kill(pid, unix.SIGKILL)
		default:
			continue // appeared since the first read: next round
		}
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return 0, fmt.Errorf("cgroups: kill %d: %w", pid, err)
		}
	}
	return len(pids), nil
}

func (g *Group) canFreeze() bool {
	if _, ok := g.ctl["freezer"]; ok {
		return true
	}
	return g.v2dir != "" && exists(filepath.Join(g.v2dir, "cgroup.freeze"))
}

// freeze stops every process in the group and returns the function that
// thaws it. A group that does not settle frozen in about a second (a task
// the freezer cannot stop) is killed anyway: the SIGKILL loop mops up.
func (g *Group) freeze(ctx context.Context) (thaw func() error, err error) {
	var file, on, off, stateFile, frozenKey string
	if dir, ok := g.ctl["freezer"]; ok {
		file, on, off = filepath.Join(dir, "freezer.state"), "FROZEN", "THAWED"
		stateFile = file
	} else if g.v2dir != "" {
		file, on, off = filepath.Join(g.v2dir, "cgroup.freeze"), "1", "0"
		stateFile, frozenKey = filepath.Join(g.v2dir, "cgroup.events"), "frozen"
	} else {
		return nil, fmt.Errorf("cgroups: group %s has no freezer: %w", g.name, errors.ErrUnsupported)
	}
	if err := writeFile(file, on); err != nil {
		return nil, err
	}
	thaw = func() error { return writeFile(file, off) }
	wait := time.Millisecond
	for attempt := 0; attempt < 15; attempt++ {
		frozen := false
		if frozenKey != "" {
			n, found, err := readKeyed(stateFile, frozenKey)
			frozen = err == nil && found && n == 1
		} else {
			s, err := readFile(stateFile)
			frozen = err == nil && s == "FROZEN"
		}
		if frozen {
			break
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, errors.Join(err, thaw())
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
	return thaw, nil
}
