package exec

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/user"
)

// defaultPath is used when the command's environment has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// runInit is PID 1 of the sandbox: it builds the container view, runs the
// command as PID 2, kills the rest, undoes its marks on the root and returns
// the command's exit code. Errors are sandbox failures.
func runInit(cfg *config) (code int, err error) {
	if cfg.CgroupNS || cfg.CommandIsInit {
		// Namespaces unshared and credentials set below belong to this
		// thread; the command is exec'd or forked from it. Never unlocked,
		// so the thread is never reused for anything else.
		runtime.LockOSThread()
	}
	if cfg.CgroupNS {
		// Only now: the parent has moved us into the container's cgroup,
		// which becomes the namespace's root.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return 0, fmt.Errorf("making cgroup namespace: %w", err)
		}
	}
	if cfg.SnapshotRoot != "" {
		if err := os.Chdir(cfg.SnapshotRoot); err != nil {
			return 0, fmt.Errorf("entering snapshot root: %w", err)
		}
	}
	if err := mountOne(cfg.Root, cfg.RootDir); err != nil {
		return 0, fmt.Errorf("mounting root: %w", err)
	}
	if cfg.NetworkNone {
		if err := loopbackUp(); err != nil {
			return 0, err
		}
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return 0, fmt.Errorf("setting hostname: %w", err)
		}
	}

	s := &sandbox{root: cfg.RootDir}
	// Undo everything on the way out, also when setup fails half way.
	defer func() {
		if cerr := s.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := s.setupMounts(cfg); err != nil {
		return 0, err
	}
	s.setupDone()
	if cfg.ReadOnlyRoot {
		// Not recursive: /proc, /dev, volumes and the rest keep theirs.
		if err := setMountAttrs(cfg.RootDir, unix.MS_RDONLY, false); err != nil {
			return 0, fmt.Errorf("making the root read-only: %w", err)
		}
	}
	if cfg.Terminal {
		con, err := openSandboxConsole(cfg)
		if err != nil {
			return 0, err
		}
		defer unix.Close(con.slave)
	}
	if err := pivotRoot(cfg.RootDir); err != nil {
		return 0, err
	}
	s.root = "/"
	if err := resolveUser(cfg); err != nil {
		return 0, err
	}

	unix.Umask(0o022)
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		if !cfg.ReadOnlyRoot || !errors.Is(err, unix.EROFS) {
			return 0, fmt.Errorf("making working dir: %w", err)
		}
	}
	if cfg.CommandIsInit {
		return execCommand(cfg, cwd)
	}
	return runCommand(cfg, cwd)
}

// openSandboxConsole opens a pty in the sandbox's devpts, hands the master
// to the parent and puts the slave on our stdio, where the command gets it.
func openSandboxConsole(cfg *config) (*console, error) {
	if cfg.ConsoleFD <= 0 {
		return nil, errors.New("terminal asked for without a console socket")
	}
	dir, err := unix.Open(cfg.RootDir, unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening root: %w", err)
	}
	defer unix.Close(dir)
	con, err := openConsole(dir, "dev/pts/ptmx", cfg.WindowSize)
	if err != nil {
		return nil, err
	}
	if err := con.useAsStdio(); err != nil {
		unix.Close(con.master)
		unix.Close(con.slave)
		return nil, err
	}
	if err := con.handOver(cfg.ConsoleFD); err != nil {
		unix.Close(con.slave)
		return nil, err
	}
	unix.Close(cfg.ConsoleFD)
	return con, nil
}

// execCommand replaces this process (PID 1) with the command. It returns
// only when that fails: 127 when the command is missing, 126 otherwise.
func execCommand(cfg *config, cwd string) (int, error) {
	env := cfg.Env
	if env == nil {
		env = []string{}
	}
	name := cfg.Args[0]
	path, err := lookPath(name, env, cwd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "exec: %q: %v\n", name, err)
		return 127, nil
	}
	lastCap, err := readLastCap()
	if err != nil {
		return 0, err
	}
	if err := unix.Chdir(cwd); err != nil {
		return 0, fmt.Errorf("entering working dir: %w", err)
	}
	if cfg.Terminal {
		// We lead a session of our own (the parent made it); the pty on
		// fd 0 becomes its controlling terminal.
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
			return 0, fmt.Errorf("setting controlling terminal: %w", err)
		}
	}
	if err := dropCapabilities(lastCap); err != nil {
		return 0, err
	}
	if cfg.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return 0, fmt.Errorf("setting no_new_privs: %w", err)
		}
	}
	// Go applies these to every thread of the process.
	if err := syscall.Setgroups(intIDs(cfg.Groups)); err != nil {
		return 0, fmt.Errorf("setting groups: %w", err)
	}
	if err := syscall.Setgid(int(cfg.GID)); err != nil {
		return 0, fmt.Errorf("setting gid: %w", err)
	}
	if err := syscall.Setuid(int(cfg.UID)); err != nil {
		return 0, fmt.Errorf("setting uid: %w", err)
	}
	notifyStarted(cfg.StartedFD)
	err = unix.Exec(path, cfg.Args, env)
	fmt.Fprintf(os.Stderr, "exec: %q: %v\n", name, err)
	if errors.Is(err, unix.ENOENT) {
		return 127, nil
	}
	return 126, nil
}

func intIDs(ids []uint32) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

// pivotRoot makes root the process's root and detaches the old one, so
// nothing of the host stays reachable.
func pivotRoot(root string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening old root: %w", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("entering new root: %w", err)
	}
	// With new_root == put_old the old root ends up stacked on the new
	// one; entering it through the saved fd lets us detach exactly it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("entering old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("entering new root: %w", err)
	}
	return nil
}

// runCommand starts the command as PID 2, forwards signals to it, reaps
// every process until it ends, then kills and reaps the rest.
func runCommand(cfg *config, cwd string) (int, error) {
	env := cfg.Env
	if env == nil {
		env = []string{} // nil would mean our own environment
	}
	name := cfg.Args[0]
	path, err := lookPath(name, env, cwd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "exec: %q: %v\n", name, err)
		return 127, nil
	}
	lastCap, err := readLastCap()
	if err != nil {
		return 0, err
	}

	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigc)

	type started struct {
		pid int
		err error
	}
	done := make(chan started, 1)
	go func() {
		// The capability bounding set is per thread and inherited by the
		// fork; this thread is never unlocked, so it dies with the goroutine.
		runtime.LockOSThread()
		if cfg.CgroupNS {
			// A namespace is per thread: this one needs its own, rooted
			// where the init's is.
			if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
				done <- started{err: fmt.Errorf("making cgroup namespace: %w", err)}
				return
			}
		}
		if err := dropCapabilities(lastCap); err != nil {
			done <- started{err: err}
			return
		}
		if cfg.NoNewPrivileges {
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				done <- started{err: fmt.Errorf("setting no_new_privs: %w", err)}
				return
			}
		}
		pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{
			Dir:   cwd,
			Env:   env,
			Files: []uintptr{0, 1, 2},
			Sys: &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups},
				// With a terminal the command leads its own session with
				// the pty (on its fd 0) as controlling terminal, for job
				// control; we keep none.
				Setsid:  cfg.Terminal,
				Setctty: cfg.Terminal,
				Ctty:    0,
			},
		})
		done <- started{pid, err}
	}()
	st := <-done
	if st.err != nil {
		var errno syscall.Errno
		if !errors.As(st.err, &errno) {
			return 0, st.err
		}
		fmt.Fprintf(os.Stderr, "exec: %q: %v\n", name, errno)
		if errno == syscall.ENOENT {
			return 127, nil
		}
		return 126, nil
	}
	notifyStarted(cfg.StartedFD)
	go func() {
		for sig := range sigc {
			_ = unix.Kill(st.pid, sig.(syscall.Signal))
		}
	}()

	code := -1
	for code < 0 {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("waiting for command: %w", err)
		}
		if pid != st.pid {
			continue // an orphan reparented to us
		}
		switch {
		case ws.Exited():
			code = ws.ExitStatus()
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		}
	}
	// From PID 1, -1 means every other process of the namespace.
	_ = unix.Kill(-1, unix.SIGKILL)
	for {
		_, err := unix.Wait4(-1, nil, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break
		}
	}
	return code, nil
}

// lookPath finds name like a shell would, using PATH from env, inside the
// current (new) root.
func lookPath(name string, env []string, cwd string) (string, error) {
	return lookPathIn("/", name, env, cwd)
}

// isDefaultCap reports whether c is in Docker's and BuildKit's default
// capability set.
func isDefaultCap(c uintptr) bool {
	switch c {
	case unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
		unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID,
		unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
		unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE:
		return true
	}
	return false
}

// readLastCap returns the highest capability number the kernel knows.
func readLastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("reading cap_last_cap: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parsing cap_last_cap: %w", err)
	}
	return uintptr(n), nil
}

// dropCapabilities removes every capability but the defaults from the
// calling thread's bounding set, so a root command gets only those.
func dropCapabilities(lastCap uintptr) error {
	for c := uintptr(0); c <= lastCap; c++ {
		if isDefaultCap(c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("dropping capability %d: %w", c, err)
		}
	}
	return nil
}

// resolveUser applies cfg.User from the image's own passwd and group files
// and gives the command a HOME, as BuildKit does.
func resolveUser(cfg *config) error {
	u, err := user.Lookup("/", cfg.User)
	if err != nil {
		return err
	}
	if cfg.User != "" {
		cfg.UID, cfg.GID, cfg.Groups = u.UID, u.GID, u.Groups
	}
	for _, e := range cfg.Env {
		if strings.HasPrefix(e, "HOME=") {
			return nil
		}
	}
	cfg.Env = append(append([]string(nil), cfg.Env...), "HOME="+u.Home)
	return nil
}
