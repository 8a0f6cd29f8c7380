package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/user"
)

// EnterSpec describes a command started inside a running sandbox, as
// `strata exec` does.
type EnterSpec struct {
	// PID is the host PID of the sandbox's PID 1. The command joins its
	// IPC, UTS, network, PID and cgroup namespaces and gets its root
	// (/proc/PID/root) as root directory.
	PID int
	// Process is the command. Cwd must exist in the sandbox ("/" when
	// empty); User is resolved from the sandbox's own passwd and group.
	Process Process
	// NoNewPrivileges, Terminal, Console, WindowSize, Created and Started
	// are as in [Spec]; Created gets the PID of the helper process that
	// will start the command, which is the place to move it into the
	// sandbox's cgroup (the command then starts there).
	NoNewPrivileges bool
	Terminal        bool
	Console         func(master *os.File)
	WindowSize      WindowSize
	Created         func(pid int) error
	Started         func()
}

// Enter runs spec.Process inside the running sandbox whose PID 1 is
// spec.PID and returns its exit status (128+signal when killed by one; 127
// when the command does not exist). The command has Docker's default
// capabilities like the sandbox's own. err is non-nil only when entering
// failed or ctx was cancelled (the command is then killed).
//
// The command does not join the sandbox's mount namespace (a Go program
// cannot: setns(2) into a mount namespace needs a single-threaded caller)
// but is chrooted into the sandbox's root, through which it sees every
// mount of the sandbox. What differs is /proc/self/mountinfo, which lists
// nothing for it.
func Enter(ctx context.Context, spec EnterSpec) (int, error) {
	if spec.PID <= 0 {
		return -1, errors.New("exec: no sandbox PID given")
	}
	if len(spec.Process.Args) == 0 || spec.Process.Args[0] == "" {
		return -1, errors.New("exec: no command given")
	}
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	cfg := config{
		Role:            roleEnter,
		TargetPID:       spec.PID,
		Args:            spec.Process.Args,
		Env:             spec.Process.Env,
		Cwd:             spec.Process.Cwd,
		UID:             spec.Process.UID,
		GID:             spec.Process.GID,
		Groups:          spec.Process.AdditionalGIDs,
		User:            spec.Process.User,
		NoNewPrivileges: spec.NoNewPrivileges,
		Terminal:        spec.Terminal,
		WindowSize:      spec.WindowSize,
	}
	opts := childOpts{
		// A mount namespace of its own only so that the child's usual
		// first step (making / private) stays away from the host's.
		cloneFlags: unix.CLONE_NEWNS,
		setsid:     spec.Terminal,
		created:    spec.Created,
		started:    spec.Started,
	}
	if err := opts.attach(spec.Terminal, spec.Console, spec.Process); err != nil {
		return -1, err
	}
	state, msg, err := runChild(ctx, &cfg, opts)
	if err != nil {
		return -1, err
	}
	if msg != "" {
		return -1, fmt.Errorf("entering sandbox: %s", msg)
	}
	return exitStatus(state, false)
}

// sandboxNamespaces are joined by Enter, in this order: the PID namespace
// last, as it only applies to the children we fork.
func sandboxNamespaces() []struct {
	name string
	flag int
} {
	return []struct {
		name string
		flag int
	}{
		{"cgroup", unix.CLONE_NEWCGROUP},
		{"ipc", unix.CLONE_NEWIPC},
		{"uts", unix.CLONE_NEWUTS},
		{"net", unix.CLONE_NEWNET},
		{"pid", unix.CLONE_NEWPID},
	}
}

// runEnter is the child side of Enter: join the namespaces on this thread
// and fork the command from it.
func runEnter(cfg *config) (int, error) {
	// Namespaces joined with setns belong to this thread; the command is
	// forked from it, and it is never unlocked.
	runtime.LockOSThread()
	proc := fmt.Sprintf("/proc/%d", cfg.TargetPID)
	root := proc + "/root"
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("opening the sandbox's root: %w", err)
	}
	defer unix.Close(rootFD)
	for _, ns := range sandboxNamespaces() {
		fd, err := unix.Open(filepath.Join(proc, "ns", ns.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if ns.name == "cgroup" && errors.Is(err, unix.ENOENT) {
				continue // a kernel without cgroup namespaces
			}
			return 0, fmt.Errorf("opening %s namespace: %w", ns.name, err)
		}
		err = unix.Setns(fd, ns.flag)
		unix.Close(fd)
		if err != nil {
			return 0, fmt.Errorf("joining %s namespace: %w", ns.name, err)
		}
	}

	u, err := user.Lookup(root, cfg.User)
	if err != nil {
		return 0, err
	}
	if cfg.User != "" {
		cfg.UID, cfg.GID, cfg.Groups = u.UID, u.GID, u.Groups
	}
	env := cfg.Env
	if env == nil {
		env = []string{}
	}
	if !hasEnv(env, "HOME") {
		env = append(append([]string(nil), env...), "HOME="+u.Home)
	}
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if full, err := securejoin.SecureJoin(root, cwd); err != nil {
		return 0, fmt.Errorf("working dir %s: %w", cwd, err)
	} else if fi, err := os.Stat(full); err != nil || !fi.IsDir() {
		return 0, fmt.Errorf("working dir %s does not exist in the container", cwd)
	}
	name := cfg.Args[0]
	path, err := lookPathIn(root, name, env, cwd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "exec: %q: %v\n", name, err)
		return 127, nil
	}

	files := []uintptr{0, 1, 2}
	if cfg.Terminal {
		con, err := openConsole(rootFD, "dev/pts/ptmx", cfg.WindowSize)
		if err != nil {
			return 0, err
		}
		defer unix.Close(con.slave)
		if err := con.handOver(cfg.ConsoleFD); err != nil {
			return 0, err
		}
		unix.Close(cfg.ConsoleFD)
		s := uintptr(con.slave)
		files = []uintptr{s, s, s}
	}
	lastCap, err := readLastCap()
	if err != nil {
		return 0, err
	}
	if err := dropCapabilities(lastCap); err != nil {
		return 0, err
	}
	if cfg.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return 0, fmt.Errorf("setting no_new_privs: %w", err)
		}
	}

	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigc)
	pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{
		Dir:   cwd,
		Env:   env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Chroot:     root,
			Credential: &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups},
			Setsid:     cfg.Terminal,
			Setctty:    cfg.Terminal,
			Ctty:       0,
			// No Pdeathsig: Go's fork checks it by comparing getppid()
			// with our PID, and in the sandbox's PID namespace getppid()
			// is 0, so the child would kill itself. A command whose
			// helper is killed goes on until it ends or the sandbox
			// does, as with docker exec.
		},
	})
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			return 0, err
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
			_ = unix.Kill(pid, sig.(syscall.Signal))
		}
	}()
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("waiting for command: %w", err)
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), nil
		case ws.Signaled():
			return 128 + int(ws.Signal()), nil
		}
	}
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// lookPathIn is lookPath for a root we are not chrooted into: the path
// returned is inside root, each candidate resolved within it.
func lookPathIn(root, name string, env []string, cwd string) (string, error) {
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
		full, err := securejoin.SecureJoin(root, p)
		if err != nil {
			continue
		}
		fi, err := os.Stat(full)
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("executable file not found in $PATH")
}
