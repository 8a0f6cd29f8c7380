package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Group is one container's cgroup: a directory of the same name in every
// hierarchy it uses.
type Group struct {
	name   string
	layout Layout
	// dirs are the group's directories: one per v1 hierarchy (co-mounted
	// controllers share one), then the cgroup2 one if any.
	dirs []string
	// v2dir is the group's directory on the cgroup2 mount, "" when none. On
	// a hybrid machine it carries no controllers but still gives
	// cgroup.kill and cgroup.freeze.
	v2dir string
	// ctl maps each controller the group uses to the directory holding
	// its interface files.
	ctl      map[string]string
	warnings []string
}

// groupControllers are the controllers a group joins wherever they are
// available: limits (memory, cpu, pids), stats (cpuacct) and killing
// without fork races (freezer).
func groupControllers() []string {
	return []string{"memory", "cpu", "cpuacct", "pids", "freezer"}
}

type config struct {
	controllers []string // joined when available
	numCPU      int
}

// New creates the cgroup named name (a relative path such as
// "strata/<id>") in every hierarchy holding a controller a group uses, and
// applies r. On cgroup v2 each ancestor of the group (the "strata" parent)
// gets the group's controllers enabled in its cgroup.subtree_control; those
// ancestors must hold no processes themselves (v2's no-internal-processes
// rule). A group of that name must not exist yet. On failure nothing New
// created is left behind (ancestors are kept: other groups share them).
func New(ctx context.Context, name string, r Resources) (*Group, error) {
	l, err := DetectLayout()
	if err != nil {
		return nil, err
	}
	return create(ctx, l, name, r, config{controllers: groupControllers(), numCPU: runtime.NumCPU()})
}

func create(ctx context.Context, l Layout, name string, r Resources, cfg config) (g *Group, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	lim, err := r.check(cfg.numCPU)
	if err != nil {
		return nil, err
	}
	for _, c := range lim.needs() {
		if _, ok := l.Controllers[c]; !ok {
			return nil, fmt.Errorf("cgroups: the %s limit needs the %s controller, which no mounted cgroup hierarchy has (%s): %w", c, c, l, errors.ErrUnsupported)
		}
	}

	g = &Group{name: name, layout: l, ctl: map[string]string{}}
	var created []string
	defer func() {
		if err != nil {
			// Still empty: nothing has been added yet.
			for _, d := range slices.Backward(created) {
				_ = unix.Rmdir(d)
			}
		}
	}()

	var onV2 []string
	for _, c := range cfg.controllers {
		mount, ok := l.Controllers[c]
		if !ok {
			continue
		}
		if l.onV2(c) {
			onV2 = append(onV2, c)
			continue
		}
		dir := filepath.Join(mount, name)
		if !slices.Contains(g.dirs, dir) {
			if err := makeLeaf(mount, name); err != nil {
				return nil, err
			}
			created = append(created, dir)
			g.dirs = append(g.dirs, dir)
		}
		g.ctl[c] = dir
	}
	if l.Unified != "" {
		dir := filepath.Join(l.Unified, name)
		err := makeV2(l.Unified, name, onV2)
		switch {
		case err == nil:
			created = append(created, dir)
			g.dirs = append(g.dirs, dir)
			g.v2dir = dir
			for _, c := range onV2 {
				g.ctl[c] = dir
			}
		case len(onV2) == 0 && (errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS)):
			// Hybrid: the v2 directory only adds cgroup.kill, so a
			// read-only cgroup2 mount (as in some containers) is no reason
			// to fail.
			g.warnings = append(g.warnings, fmt.Sprintf("no cgroup2 directory: %v", err))
		default:
			return nil, err
		}
	}

	for _, c := range []string{"memory", "cpu", "pids"} {
		dir, ok := g.ctl[c]
		if !ok {
			continue
		}
		for _, s := range lim.settings(c, dir == g.v2dir) {
			path := filepath.Join(dir, s.file)
			if s.swap && !exists(path) {
				g.noSwapAccounting(dir, path, lim)
				continue
			}
			if err := writeFile(path, s.value); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// noSwapAccounting handles a kernel that does not account swap (booted
// without swapaccount, or no swap support): memory alone is limited.
func (g *Group) noSwapAccounting(dir, missing string, lim limits) {
	if lim.memsw == -1 {
		return // unlimited swap asked for: nothing is lost
	}
	msg := fmt.Sprintf("swap accounting is off (%s missing): swap is not limited", missing)
	if dir != g.v2dir && lim.memsw == lim.memory {
		// No swap wanted: keep the group's pages out of swap instead.
		if err := writeFile(filepath.Join(dir, "memory.swappiness"), "0"); err == nil {
			msg += "; memory.swappiness set to 0"
		} else {
			msg += fmt.Sprintf("; %v", err)
		}
	}
	g.warnings = append(g.warnings, msg)
}

// checkName accepts a relative, clean path with no "." or ".." parts.
func checkName(name string) error {
	if name == "" || !filepath.IsLocal(name) || filepath.Clean(name) != name || name == "." ||
		strings.ContainsAny(name, "\n\x00") {
		return fmt.Errorf("cgroups: invalid group name %q: want a relative path such as strata/<id>", name)
	}
	return nil
}

// makeLeaf creates mount/name, its ancestors as needed; the leaf itself
// must be new.
func makeLeaf(mount, name string) error {
	dir := filepath.Join(mount, name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("cgroups: create %s: %w", filepath.Dir(dir), bareErr(err))
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cgroups: cgroup %s already exists: %w", dir, fs.ErrExist)
		}
		return fmt.Errorf("cgroups: create %s: %w", dir, bareErr(err))
	}
	return nil
}

// makeV2 creates root/name on a cgroup2 hierarchy, enabling controllers in
// the subtree_control of root and of every ancestor of the leaf, top down
// (a controller can only be enabled where the parent has enabled it).
func makeV2(root, name string, controllers []string) error {
	cur := root
	parts := strings.Split(name, "/")
	for i, p := range parts {
		if err := enableControllers(cur, controllers); err != nil {
			return err
		}
		cur = filepath.Join(cur, p)
		if i == len(parts)-1 {
			break
		}
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cgroups: create %s: %w", cur, bareErr(err))
		}
	}
	return makeLeaf(root, name)
}

// enableControllers adds controllers to dir's cgroup.subtree_control,
// writing only when some are missing so a parent that already has them
// is never touched.
func enableControllers(dir string, controllers []string) error {
	if len(controllers) == 0 {
		return nil
	}
	file := filepath.Join(dir, "cgroup.subtree_control")
	cur, err := readFile(file)
	if err != nil {
		return err
	}
	enabled := strings.Fields(cur)
	var add []string
	for _, c := range controllers {
		if !slices.Contains(enabled, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	err = writeFile(file, strings.Join(add, " "))
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w (cgroup v2 does not let a cgroup that holds processes of its own enable controllers for its children: move those processes into a child cgroup)", err)
	}
	return err
}

// Load reopens the group New created under name, for example from another
// strata process. It fails with an error wrapping fs.ErrNotExist when no
// hierarchy has the group.
func Load(name string) (*Group, error) {
	l, err := DetectLayout()
	if err != nil {
		return nil, err
	}
	return load(l, name, groupControllers())
}

func load(l Layout, name string, controllers []string) (*Group, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	g := &Group{name: name, layout: l, ctl: map[string]string{}}
	for _, c := range controllers {
		mount, ok := l.Controllers[c]
		if !ok || l.onV2(c) {
			continue
		}
		dir := filepath.Join(mount, name)
		if !exists(dir) {
			continue
		}
		if !slices.Contains(g.dirs, dir) {
			g.dirs = append(g.dirs, dir)
		}
		g.ctl[c] = dir
	}
	if l.Unified != "" {
		dir := filepath.Join(l.Unified, name)
		if exists(dir) {
			g.dirs = append(g.dirs, dir)
			g.v2dir = dir
			avail, err := readFile(filepath.Join(dir, "cgroup.controllers"))
			if err != nil {
				return nil, err
			}
			for _, c := range strings.Fields(avail) {
				if slices.Contains(controllers, c) {
					g.ctl[c] = dir
				}
			}
		}
	}
	if len(g.dirs) == 0 {
		return nil, fmt.Errorf("cgroups: no cgroup named %q (%s): %w", name, l, fs.ErrNotExist)
	}
	return g, nil
}

// Name is the group's name as given to New or Load.
func (g *Group) Name() string { return g.name }

// Layout is the machine's cgroup layout the group was made in.
func (g *Group) Layout() Layout { return g.layout }

// Paths are the group's directories, one per hierarchy it is in.
func (g *Group) Paths() []string { return slices.Clone(g.dirs) }

// Controllers maps each controller the group uses to its directory.
func (g *Group) Controllers() map[string]string {
	out := make(map[string]string, len(g.ctl))
	for c, d := range g.ctl {
		out[c] = d
	}
	return out
}

// Warnings lists what New could not enforce exactly as asked (no swap
// accounting, no writable cgroup2 directory on a hybrid machine).
func (g *Group) Warnings() []string { return slices.Clone(g.warnings) }

// Add moves process pid (with all its threads) into the group in every
// hierarchy. Children it forks afterwards start inside the group.
func (g *Group) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroups: add pid %d: not a process id", pid)
	}
	for _, d := range g.dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// AddSelf moves the calling process into the group: used by a child that
// joins its group before exec'ing the command.
func (g *Group) AddSelf() error { return g.Add(os.Getpid()) }

// CgroupFD opens the group's cgroup2 directory for clone3's
// CLONE_INTO_CGROUP (syscall.SysProcAttr UseCgroupFD and CgroupFD), which
// starts a process already inside the group. It fails with an error
// wrapping errors.ErrUnsupported unless the group is wholly on cgroup v2:
// on v1 and hybrid machines use Add. The caller closes the file.
func (g *Group) CgroupFD() (*os.File, error) {
	if g.v2dir == "" || len(g.dirs) != 1 {
		return nil, fmt.Errorf("cgroups: group %s is not wholly on cgroup v2 (%s): %w", g.name, g.layout, errors.ErrUnsupported)
	}
	fd, err := unix.Open(g.v2dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cgroups: open %s: %w", g.v2dir, err)
	}
	return os.NewFile(uintptr(fd), g.v2dir), nil
}

// Delete removes the group's directories. Its processes must be gone
// (Kill first); a directory the kernel still reports busy is retried
// briefly, then reported with the pids still in it. Directories already
// gone are fine, so Delete can be repeated. The shared ancestors (the
// "strata" parent) stay.
func (g *Group) Delete(ctx context.Context) error {
	var errs []error
	for _, d := range slices.Backward(g.dirs) {
		if err := rmdirRetry(ctx, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(ctx context.Context, dir string) error {
	wait := time.Millisecond
	for attempt := 0; ; attempt++ {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && attempt < 20:
			// EBUSY right after the last process exits is transient: the
			// kernel tears exiting tasks down asynchronously.
			serr := sleep(ctx, wait)
			if serr == nil {
				wait = min(2*wait, 200*time.Millisecond)
				continue
			}
			err = serr
		}
		msg := fmt.Sprintf("cgroups: remove %s", dir)
		if pids, perr := readPids(dir); perr == nil && len(pids) > 0 {
			msg += fmt.Sprintf(" (processes still in it: %v)", pids)
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
}

// sleep waits d or until ctx is done.
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
