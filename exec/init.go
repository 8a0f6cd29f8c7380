package exec

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
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
		return 0, fmt.Errorf("making working dir: %w", err)
	}
	return runCommand(cfg, cwd)
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
		if err := dropCapabilities(lastCap); err != nil {
			done <- started{err: err}
			return
		}
		pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{
			Dir:   cwd,
			Env:   env,
			Files: []uintptr{0, 1, 2},
			Sys: &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups},
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
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar, found := defaultPath, false
	for i := len(env) - 1; i >= 0 && !found; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			pathVar, found = v, true
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("executable file not found in $PATH")
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
