package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/snapshot"
)

// Network selects the network namespace of a RUN sandbox.
type Network string

const (
	// NetworkHost shares the host's network namespace (the default).
	NetworkHost Network = "host"
	// NetworkNone gives the sandbox a fresh namespace with only lo, up.
	NetworkNone Network = "none"
)

// Process is the command run inside the sandbox.
type Process struct {
	Args           []string // Args[0] without a slash is looked up in Env's PATH inside the root
	Env            []string // the complete environment; nil means empty
	Cwd            string   // created (mkdir -p) when missing; "/" when empty
	UID, GID       uint32
	AdditionalGIDs []uint32
	// User, when set, is a Dockerfile USER ("name[:group]" or "uid[:gid]")
	// resolved inside the root from its /etc/passwd and /etc/group; it
	// replaces UID, GID and AdditionalGIDs. HOME is set from the user's
	// entry when Env has none.
	User           string
	Stdin          io.Reader // nil reads from /dev/null
	Stdout, Stderr io.Writer // nil discards
}

// Spec describes one sandboxed command.
type Spec struct {
	// SnapshotRoot is where the child chdirs before mounting, so overlay
	// lowerdirs may be relative to it.
	SnapshotRoot string
	// Root is the root filesystem mount (overlay, or bind); Target is ignored.
	Root snapshot.Mount
	// Mounts are extra mounts made after the system ones; Target is a path
	// inside the root and Source a host path (bind) or a type name.
	Mounts   []snapshot.Mount
	Hostname string // also written to /etc/hostname; empty keeps the host's and leaves /etc/hostname alone
	Network  Network
	// Hosts and ResolvConf are bind-mounted over /etc/hosts and
	// /etc/resolv.conf from scratch files, so they never reach the upper dir.
	// nil leaves the image's file alone.
	Hosts, ResolvConf []byte
	Process           Process
	// TempDir is where scratch directories are made (os.TempDir() when
	// empty); everything made there is removed before Run returns.
	TempDir string

	// The fields below are what `strata run` adds; their zero values keep
	// the RUN sandbox exactly as it is.

	// CommandIsInit makes the command itself PID 1 (docker run without
	// --init): once the root is ready the child execs it instead of
	// starting it as PID 2, reaping orphans and forwarding signals. The
	// mount points the child made in the root are then left in place.
	CommandIsInit bool
	// CgroupNS gives the sandbox a cgroup namespace of its own, made after
	// Created returned (so rooted at the cgroup Created moved the init
	// into), and mounts the cgroup hierarchies read-only under
	// /sys/fs/cgroup from inside it.
	CgroupNS bool
	// FreshSysfs mounts a new read-only sysfs instead of binding the
	// host's, so /sys/class/net lists the sandbox's own interfaces.
	FreshSysfs bool
	// ReadOnlyRoot makes the root filesystem read-only once the mounts
	// are made (the mounts keep their own flags).
	ReadOnlyRoot bool
	// NoNewPrivileges sets no_new_privs on the command: setuid binaries
	// and file capabilities grant nothing.
	NoNewPrivileges bool
	// NewSession starts the sandbox in a session of its own, so the
	// caller's terminal signals (^C) reach only the caller.
	NewSession bool
	// Terminal gives the command a pseudo-terminal allocated from the
	// sandbox's own devpts as its stdin, stdout, stderr and controlling
	// terminal; Process.Stdin/Stdout/Stderr are then not used. Console
	// receives the master side (the caller closes it) before the command
	// starts; WindowSize, when not zero, is set on it first.
	Terminal   bool
	Console    func(master *os.File)
	WindowSize WindowSize
	// Created, when set, runs once the sandbox's init process exists (pid
	// is its PID on the host; its network namespace is already there)
	// and before it does anything: the place to move it into a cgroup
	// and configure its network. An error ends the sandbox.
	Created func(pid int) error
	// Started, when set, is called once the command has been started
	// (not when it could not be: Run then returns 126 or 127).
	Started func()
}

// WindowSize is a terminal's size in characters.
type WindowSize struct {
	Rows, Cols uint16
}

// Helper describes a function run by name in a child process that has its
// own mount namespace with Mounts made.
type Helper struct {
	Name    string
	Payload []byte
	// Mounts' Target is an absolute host path; the child creates it
	// (mkdir -p) and the mount is only visible to the child.
	Mounts       []snapshot.Mount
	SnapshotRoot string // chdir here before mounting (relative lowerdirs)
}

// Child-side roles and the marker argument that selects them.
const (
	childArgv0  = "strata-init"
	childMarker = "--strata-child"
	roleRun     = "run"
	roleHelper  = "helper"
	roleEnter   = "enter"
)

// config is what the parent sends to the child on fd 3.
type config struct {
	Role         string
	SnapshotRoot string
	Mounts       []snapshot.Mount

	// Role run.
	Root        snapshot.Mount
	RootDir     string // empty host dir where the child mounts Root
	Scratch     string // host dir for staging mounts (Mount.Subdir)
	Hostname    string
	NetworkNone bool
	Files       map[string]string // path in root -> host scratch file to bind
	Args        []string
	Env         []string
	Cwd         string
	UID, GID    uint32
	Groups      []uint32
	User        string

	// Container options (see Spec).
	CommandIsInit   bool
	CgroupNS        bool
	FreshSysfs      bool
	ReadOnlyRoot    bool
	NoNewPrivileges bool
	Terminal        bool
	WindowSize      WindowSize
	ConsoleFD       int // socket to send the pty master over, 0 = none
	StartedFD       int // pipe to write one byte to once the command runs, 0 = none

	// Role enter.
	TargetPID int

	// Role helper.
	Name    string
	Payload []byte
}

// maxErrMsg bounds what is read from the child's error pipe.
const maxErrMsg = 64 << 10

// Run runs spec.Process in new mount, PID, UTS and IPC namespaces (plus a
// network namespace for NetworkNone) over spec.Root and returns its exit
// status (128+signal when killed by a signal). err is non-nil only when the
// sandbox itself failed or ctx was cancelled (then it is ctx.Err() and the
// whole PID namespace has been killed).
func Run(ctx context.Context, spec Spec) (exitCode int, err error) {
	if len(spec.Process.Args) == 0 || spec.Process.Args[0] == "" {
		return -1, errors.New("exec: no command given")
	}
	if spec.Root.Type == "" {
		return -1, errors.New("exec: no root mount given")
	}
	var cloneFlags uintptr = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC
	switch spec.Network {
	case "", NetworkHost:
	case NetworkNone:
		cloneFlags |= unix.CLONE_NEWNET
	default:
		return -1, fmt.Errorf("exec: unknown network mode %q", spec.Network)
	}
	if err := ctx.Err(); err != nil {
		return -1, err
	}

	scratch, err := os.MkdirTemp(spec.TempDir, "strata-run-")
	if err != nil {
		return -1, fmt.Errorf("making sandbox scratch dir: %w", err)
	}
	defer os.RemoveAll(scratch)

	cfg := config{
		Role:         roleRun,
		SnapshotRoot: spec.SnapshotRoot,
		Mounts:       spec.Mounts,
		Root:         spec.Root,
		RootDir:      filepath.Join(scratch, "root"),
		Scratch:      scratch,
		Hostname:     spec.Hostname,
		NetworkNone:  spec.Network == NetworkNone,
		Files:        map[string]string{},
		Args:         spec.Process.Args,
		Env:          spec.Process.Env,
		Cwd:          spec.Process.Cwd,
		UID:          spec.Process.UID,
		GID:          spec.Process.GID,
		Groups:       spec.Process.AdditionalGIDs,
		User:         spec.Process.User,

		CommandIsInit:   spec.CommandIsInit,
		CgroupNS:        spec.CgroupNS,
		FreshSysfs:      spec.FreshSysfs,
		ReadOnlyRoot:    spec.ReadOnlyRoot,
		NoNewPrivileges: spec.NoNewPrivileges,
		Terminal:        spec.Terminal,
		WindowSize:      spec.WindowSize,
	}
	if err := os.Mkdir(cfg.RootDir, 0o700); err != nil {
		return -1, fmt.Errorf("making sandbox root dir: %w", err)
	}
	files := []struct {
		target, name string
		data         []byte
	}{
		{"/etc/hosts", "hosts", spec.Hosts},
		{"/etc/resolv.conf", "resolv.conf", spec.ResolvConf},
	}
	if spec.Hostname != "" {
		files = append(files, struct {
			target, name string
			data         []byte
		}{"/etc/hostname", "hostname", []byte(spec.Hostname + "\n")})
	}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		p := filepath.Join(scratch, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return -1, fmt.Errorf("writing sandbox %s: %w", f.name, err)
		}
		cfg.Files[f.target] = p
	}

	opts := childOpts{
		cloneFlags: cloneFlags,
		setsid:     spec.NewSession || spec.Terminal,
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
		return -1, fmt.Errorf("sandbox: %s", msg)
	}
	return exitStatus(state, spec.CommandIsInit)
}

// exitStatus turns the init's wait status into the command's exit code.
// When the command is the init, death by a signal is the command's own
// (128+signal, as a shell reports it); otherwise it means strata-init
// itself was killed.
func exitStatus(state *os.ProcessState, commandIsInit bool) (int, error) {
	ws, ok := state.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Exited():
		return ws.ExitStatus(), nil
	case ok && ws.Signaled() && commandIsInit:
		return 128 + int(ws.Signal()), nil
	case ok && ws.Signaled():
		return -1, fmt.Errorf("sandbox init killed by signal %v", ws.Signal())
	default:
		return -1, fmt.Errorf("sandbox init ended oddly: %v", state)
	}
}

// RunHelper runs the function registered under h.Name (see [Child]) in a
// child process with its own mount namespace in which h.Mounts are made.
// The child's stderr goes to stderr (may be nil). The mounts vanish when
// the child exits.
func RunHelper(ctx context.Context, h Helper, stderr io.Writer) error {
	if h.Name == "" {
		return errors.New("exec: no helper name given")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cfg := config{
		Role:         roleHelper,
		SnapshotRoot: h.SnapshotRoot,
		Mounts:       h.Mounts,
		Name:         h.Name,
		Payload:      h.Payload,
	}
	tail := &tailWriter{w: stderr}
	state, msg, err := runChild(ctx, &cfg, childOpts{cloneFlags: unix.CLONE_NEWNS, stderr: tail})
	if err != nil {
		return err
	}
	if msg != "" {
		return fmt.Errorf("helper %s: %s", h.Name, msg)
	}
	if !state.Success() {
		if last := tail.lastLine(); last != "" {
			return fmt.Errorf("helper %s: %v: %s", h.Name, state, last)
		}
		return fmt.Errorf("helper %s: %v", h.Name, state)
	}
	return nil
}

// childOpts are how runChild starts a child.
type childOpts struct {
	cloneFlags     uintptr
	stdin          io.Reader
	stdout, stderr io.Writer
	setsid         bool
	created        func(pid int) error // run before the config is sent
	console        func(*os.File)      // non-nil: receive a pty master
	started        func()              // non-nil: told when the command runs
}

// runChild starts the child role, sends it cfg, waits for it and returns
// its state plus whatever it reported on the error pipe.
func runChild(ctx context.Context, cfg *config, o childOpts) (*os.ProcessState, string, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, "", fmt.Errorf("making config pipe: %w", err)
	}
	defer cfgR.Close()
	defer cfgW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, "", fmt.Errorf("making error pipe: %w", err)
	}
	defer errR.Close()
	defer errW.Close()
	files := []*os.File{cfgR, errW}

	var consoleSock *os.File
	if o.console != nil {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, "", fmt.Errorf("making console socket: %w", err)
		}
		consoleSock = os.NewFile(uintptr(fds[0]), "console")
		theirs := os.NewFile(uintptr(fds[1]), "console-child")
		defer consoleSock.Close()
		defer theirs.Close()
		cfg.ConsoleFD = 3 + len(files)
		files = append(files, theirs)
	}
	var startedR *os.File
	if o.started != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, "", fmt.Errorf("making start pipe: %w", err)
		}
		defer r.Close()
		defer w.Close()
		startedR = r
		cfg.StartedFD = 3 + len(files)
		files = append(files, w)
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("encoding child config: %w", err)
	}

	// Pdeathsig fires when the thread that forked the child ends, not the
	// process: keep this one until the child is reaped, whatever other
	// code (a goroutine that dies locked after a setns) does to threads.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// CommandContext's default Cancel is SIGKILL; sent to PID 1 of a PID
	// namespace it takes down every process in it.
	cmd := osexec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{childArgv0, childMarker, cfg.Role}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.stdin, o.stdout, o.stderr
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: o.cloneFlags,
		Setsid:     o.setsid,
		Pdeathsig:  syscall.SIGKILL,
	}
	// Once the namespace is gone nobody can hold the stdio pipes; this only
	// guards against a stuck copy of Stdin.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting sandbox child: %w", err)
	}
	// Our copies of the child's ends go now, so EOF means the child is done
	// with them.
	for _, f := range files {
		f.Close()
	}

	if o.created != nil {
		// The child is still blocked reading its config: nothing of the
		// sandbox has been set up or started yet.
		if err := o.created(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, "", err
		}
	}
	var aux sync.WaitGroup
	if consoleSock != nil {
		aux.Add(1)
		go func() {
			defer aux.Done()
			if m, err := recvFile(consoleSock); err == nil {
				o.console(m)
			}
		}()
	}
	if startedR != nil {
		aux.Add(1)
		go func() {
			defer aux.Done()
			var b [1]byte
			if n, _ := startedR.Read(b[:]); n == 1 {
				o.started()
			}
		}()
	}

	msgc := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(errR, maxErrMsg))
		msgc <- strings.TrimSpace(string(b))
	}()
	// A failed write means the child died early; Wait reports why.
	_, werr := cfgW.Write(data)
	cfgW.Close()

	waitErr := cmd.Wait()
	msg := <-msgc
	// The child's ends are closed now (it is gone, and so is everything
	// that could have inherited them: they are close-on-exec).
	aux.Wait()
	if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	if msg != "" {
		return cmd.ProcessState, msg, nil
	}
	if werr != nil && !cmd.ProcessState.Success() {
		return nil, "", fmt.Errorf("sending config to sandbox child: %w (child: %v)", werr, cmd.ProcessState)
	}
	var exitErr *osexec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return nil, "", fmt.Errorf("waiting for sandbox child: %w", waitErr)
	}
	return cmd.ProcessState, "", nil
}

// tailWriter passes writes on and keeps the last bytes for error messages.
type tailWriter struct {
	w    io.Writer
	tail []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.tail = append(t.tail, p...)
	if len(t.tail) > 4096 {
		t.tail = append(t.tail[:0], t.tail[len(t.tail)-4096:]...)
	}
	if t.w == nil {
		return len(p), nil
	}
	return t.w.Write(p)
}

func (t *tailWriter) lastLine() string {
	s := bytes.TrimSpace(t.tail)
	if i := bytes.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return string(s)
}

// attach gives the child a terminal (through console) or the process's
// standard streams.
func (o *childOpts) attach(terminal bool, console func(*os.File), p Process) error {
	if !terminal {
		o.stdin, o.stdout, o.stderr = p.Stdin, p.Stdout, p.Stderr
		return nil
	}
	if console == nil {
		return errors.New("exec: a terminal needs a Console function")
	}
	o.console = console
	return nil
}
