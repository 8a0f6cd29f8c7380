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
	"strings"
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

	state, msg, err := runChild(ctx, cfg, cloneFlags, spec.Process.Stdin, spec.Process.Stdout, spec.Process.Stderr)
	if err != nil {
		return -1, err
	}
	if msg != "" {
		return -1, fmt.Errorf("sandbox: %s", msg)
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Exited():
		return ws.ExitStatus(), nil
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
	state, msg, err := runChild(ctx, cfg, unix.CLONE_NEWNS, nil, nil, tail)
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

// runChild starts the child role, sends it cfg, waits for it and returns
// its state plus whatever it reported on the error pipe.
func runChild(ctx context.Context, cfg config, cloneFlags uintptr, stdin io.Reader, stdout, stderr io.Writer) (*os.ProcessState, string, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("encoding child config: %w", err)
	}
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

	// CommandContext's default Cancel is SIGKILL; sent to PID 1 of a PID
	// namespace it takes down every process in it.
	cmd := osexec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{childArgv0, childMarker, cfg.Role}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.ExtraFiles = []*os.File{cfgR, errW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: cloneFlags,
		Pdeathsig:  syscall.SIGKILL,
	}
	// Once the namespace is gone nobody can hold the stdio pipes; this only
	// guards against a stuck copy of Stdin.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting sandbox child: %w", err)
	}
	cfgR.Close()
	errW.Close()

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
