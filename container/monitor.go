package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/cgroups"
	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/netns"
	"github.com/strata-build/strata/snapshot"
)

// Streams are what a monitor attaches to the container besides its log.
type Streams struct {
	// Stdin feeds the container's stdin when it was created with
	// OpenStdin; an *os.File is handed over as it is. nil: /dev/null.
	Stdin io.Reader
	// Stdout and Stderr get the container's output as well as the log
	// (with a terminal, all of it goes to Stdout). nil: the log only.
	Stdout, Stderr io.Writer
	// Size is the terminal's initial size; Resize delivers later sizes
	// (SIGWINCH) until it is closed or the container ends.
	Size   exec.WindowSize
	Resize <-chan exec.WindowSize
	// Running, when set, is called once the container's PID 1 exists and
	// its state says running (Pid recorded), before the command starts.
	Running func(pid int)
	// Started, when set, is called once the command has started.
	Started func()
}

// Run runs the created container id to its end, with this process as its
// monitor, and returns the command's exit status (137 after an
// out-of-memory kill). err reports a container that could not be started
// (its state then says so too). When ctx ends the container is killed.
// With AutoRemove the container is removed afterwards.
func (s *Store) Run(ctx context.Context, id string, streams Streams) (code int, err error) {
	c, err := s.load(id)
	if err != nil {
		return -1, err
	}
	code, runErr := s.monitor(ctx, c, streams)
	if c.Config.AutoRemove {
		if err := s.Remove(context.WithoutCancel(ctx), id, RemoveOptions{Volumes: true}); err != nil && !errors.Is(err, ErrNotFound) {
			runErr = errors.Join(runErr, err)
		}
	}
	return code, runErr
}

// monitor is Run without the removal.
func (s *Store) monitor(ctx context.Context, c *Container, streams Streams) (int, error) {
	cfg := &c.Config
	dir := c.Dir
	self, _, err := procStart(os.Getpid())
	if err != nil {
		return -1, err
	}
	unlock, err := lockFile(ctx, lockPath(dir))
	if err != nil {
		return -1, err
	}
	var unlockOnce sync.Once
	release := func() { unlockOnce.Do(unlock) }
	defer release()
	if _, err := updateLocked(dir, func(st *State) error {
		if st.Status != StatusCreated || st.MonitorPid != 0 {
			return fmt.Errorf("container %s has already been started", cfg.Name)
		}
		st.MonitorPid, st.MonitorStart = os.Getpid(), self
		return nil
	}); err != nil {
		return -1, err
	}

	// Whatever happens from here on is recorded.
	var t teardown
	cleanCtx := context.WithoutCancel(ctx)
	code, runErr := s.start(ctx, c, streams, &t, release)
	oom := false
	if t.cg != nil {
		// As Docker's OOMKilled: the kernel's OOM killer ended a process
		// of the container (PID 1 then exits 137).
		oom, _ = t.cg.OOMKilled()
	}
	tdErr := t.run(cleanCtx, s, cfg.ID)
	release()
	_, stErr := s.updateState(cleanCtx, cfg.ID, func(st *State) error {
		st.Pid, st.PidStart = 0, 0
		st.FinishedAt = time.Now().UTC()
		st.OOMKilled = oom
		st.Ports = nil
		switch {
		case runErr != nil:
			st.Status, st.ExitCode, st.Error = StatusExited, 125, runErr.Error()
		default:
			st.Status, st.ExitCode = StatusExited, code
		}
		return nil
	})
	if runErr != nil {
		return -1, errors.Join(runErr, tdErr)
	}
	if tdErr != nil || stErr != nil {
		return code, errors.Join(tdErr, stErr)
	}
	return code, nil
}

// teardown is what start set up outside the container's own namespaces.
type teardown struct {
	cg          *cgroups.Group
	network     bool // attached to the bridge
	stopProxies context.CancelFunc
	proxies     sync.WaitGroup
	warnings    []string // recorded in the state once running
	logs        []*logStream
	log         *logFile
	console     sync.WaitGroup // output still being copied from a terminal
}

func (t *teardown) run(ctx context.Context, s *Store, id string) error {
	var errs []error
	if t.stopProxies != nil {
		t.stopProxies()
		t.proxies.Wait()
	}
	if t.network {
		if err := netns.Teardown(ctx, s.netConfig(), id); err != nil {
			errs = append(errs, err)
		}
	}
	if t.cg != nil {
		// Whatever a container forked away is in the group too.
		if err := t.cg.Kill(ctx); err != nil {
			errs = append(errs, err)
		}
		if err := t.cg.Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	t.console.Wait()
	for _, l := range t.logs {
		l.flush()
	}
	if t.log != nil {
		t.log.Close()
	}
	return errors.Join(errs...)
}

// start sets the container up and runs it; release drops the container's
// lock once the running state is recorded.
func (s *Store) start(ctx context.Context, c *Container, streams Streams, t *teardown, release func()) (int, error) {
	cfg := &c.Config
	dir := c.Dir
	lowers, err := s.lowers(cfg)
	if err != nil {
		return -1, err
	}
	mounts, err := s.prepareMounts(ctx, cfg, lowers)
	if err != nil {
		return -1, err
	}
	if t.cg, t.warnings, err = s.newCgroup(ctx, cfg); err != nil {
		return -1, err
	}
	if t.log, err = openLog(logPath(dir)); err != nil {
		return -1, err
	}
	hostsFile, resolvFile := filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	switch cfg.Network {
	case netns.ModeHost:
		hosts, _ := os.ReadFile("/etc/hosts")
		resolv, _ := os.ReadFile("/etc/resolv.conf")
		err = writeEtcFiles(dir, hosts, resolv)
	default:
		// The bridge's address is known only once attached; until then
		// the file has no entry for it.
		hosts, resolv := netns.Files(cfg.Hostname, netip.Addr{}, nil)
		err = writeEtcFiles(dir, hosts, resolv)
	}
	if err != nil {
		return -1, err
	}
	mounts = append([]snapshot.Mount{
		{Type: "bind", Source: hostsFile, Target: "/etc/hosts", Options: []string{"bind"}},
		{Type: "bind", Source: resolvFile, Target: "/etc/resolv.conf", Options: []string{"bind"}},
	}, mounts...)

	upper, work := upperDirs(dir)
	spec := exec.Spec{
		SnapshotRoot:    s.snaps.Root(),
		Root:            snapshot.OverlayMount(lowers, &snapshot.Active{Dir: upper, Work: work}),
		Mounts:          mounts,
		Hostname:        cfg.Hostname,
		Network:         exec.NetworkNone,
		TempDir:         dir,
		CommandIsInit:   !cfg.Init,
		CgroupNS:        hasCgroupNS(),
		FreshSysfs:      true,
		ReadOnlyRoot:    cfg.ReadOnly,
		NoNewPrivileges: true,
		NewSession:      true,
		Process: exec.Process{
			Args: cfg.Args,
			Env:  cfg.Env,
			Cwd:  cfg.WorkingDir,
			User: cfg.User,
		},
	}
	if cfg.Network == netns.ModeHost {
		spec.Network = exec.NetworkHost
	}
	if cfg.Tty {
		spec.Terminal, spec.WindowSize = true, streams.Size
		out := &logStream{l: t.log, stream: "stdout"}
		t.logs = append(t.logs, out)
		spec.Console = func(master *os.File) {
			t.console.Add(1)
			attachConsole(master, cfg.OpenStdin, streams, out, &t.console)
		}
	} else {
		stdout := &logStream{l: t.log, stream: "stdout"}
		stderr := &logStream{l: t.log, stream: "stderr"}
		t.logs = append(t.logs, stdout, stderr)
		spec.Process.Stdout, spec.Process.Stderr = tee(stdout, streams.Stdout), tee(stderr, streams.Stderr)
		if cfg.OpenStdin {
			spec.Process.Stdin = streams.Stdin
		}
	}
	spec.Created = func(pid int) error {
		return s.created(ctx, c, pid, t, release, streams.Running)
	}
	spec.Started = streams.Started
	return exec.Run(ctx, spec)
}

// created runs between the sandbox's PID 1 coming to exist and it setting
// anything up: it joins the cgroup, attaches the network and records the
// container as running.
func (s *Store) created(ctx context.Context, c *Container, pid int, t *teardown, release func(), running func(int)) error {
	cfg := &c.Config
	start, _, err := procStart(pid)
	if err != nil {
		return err
	}
	if t.cg != nil {
		if err := t.cg.Add(pid); err != nil {
			return err
		}
	}
	var att *netns.Attachment
	if cfg.Network == netns.ModeBridge {
		t.network = true
		att, err = netns.Setup(ctx, s.netConfig(), cfg.ID, pid, cfg.Ports)
		if err != nil {
			return err
		}
		hosts, resolv := netns.Files(cfg.Hostname, att.IP, nil)
		if err := writeEtcFiles(c.Dir, hosts, resolv); err != nil {
			return err
		}
		if err := t.serveProxies(ctx, att); err != nil {
			return err
		}
	}
	_, err = updateLocked(c.Dir, func(st *State) error {
		st.Status = StatusRunning
		st.Pid, st.PidStart = pid, start
		st.StartedAt = time.Now().UTC()
		st.Error = ""
		st.Warnings = t.warnings
		if t.cg != nil {
			st.Cgroup = t.cg.Name()
		}
		if att != nil {
			st.IP, st.Gateway, st.MAC, st.Ports = att.IP.String(), att.Gateway.String(), att.MAC, att.Ports
		}
		return nil
	})
	if err != nil {
		return err
	}
	release()
	if running != nil {
		running(pid)
	}
	return nil
}

// serveProxies binds every published port (failing when one is taken)
// and forwards them until teardown.
func (t *teardown) serveProxies(ctx context.Context, att *netns.Attachment) error {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.stopProxies = cancel
	for _, m := range att.Ports {
		p, err := netns.ListenProxy(pctx, m, att.IP)
		if err != nil {
			return err
		}
		t.proxies.Add(1)
		go func() {
			defer t.proxies.Done()
			_ = p.Serve(pctx)
		}()
	}
	return nil
}

// newCgroup makes the container's cgroup, replacing a leftover of a dead
// earlier monitor, and returns what it could not do as asked. Without
// limits asked for, a machine without usable cgroups runs the container
// without one (and a warning).
func (s *Store) newCgroup(ctx context.Context, cfg *Config) (*cgroups.Group, []string, error) {
	name := cgroupName(cfg.ID)
	if old, err := cgroups.Load(name); err == nil {
		_ = old.Kill(ctx)
		_ = old.Delete(ctx)
	}
	g, err := cgroups.New(ctx, name, cfg.Resources)
	if err != nil {
		if cfg.Resources == (cgroups.Resources{}) {
			return nil, []string{fmt.Sprintf("no cgroup (no stats, and stop relies on PID 1 alone): %v", err)}, nil
		}
		return nil, nil, err
	}
	return g, g.Warnings(), nil
}

// hasCgroupNS reports whether the kernel has cgroup namespaces.
func hasCgroupNS() bool {
	_, err := os.Stat("/proc/self/ns/cgroup")
	return err == nil
}

// writeEtcFiles writes the container's hosts and resolv.conf.
func writeEtcFiles(dir string, hosts, resolv []byte) error {
	if err := os.WriteFile(filepath.Join(dir, "hosts"), hosts, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv, 0o644)
}

// tee writes to the log stream and, when not nil, to w.
func tee(log io.Writer, w io.Writer) io.Writer {
	if w == nil {
		return log
	}
	return io.MultiWriter(log, w)
}

// attachConsole copies a terminal's output to the log (and Stdout), its
// input from Stdin when the container keeps stdin open, and applies
// resizes. done is released once the output has all been copied.
func attachConsole(master *os.File, openStdin bool, st Streams, log *logStream, done *sync.WaitGroup) {
	var out io.Writer = log
	switch {
	case log == nil && st.Stdout == nil:
		out = io.Discard
	case log == nil:
		out = st.Stdout
	case st.Stdout != nil:
		out = io.MultiWriter(log, st.Stdout)
	}
	go func() {
		defer done.Done()
		defer master.Close()
		// EIO once every holder of the slave is gone: the end.
		_, _ = copyBuffer(out, master)
	}()
	if openStdin && st.Stdin != nil {
		go func() { _, _ = copyBuffer(master, st.Stdin) }()
	}
	if st.Resize != nil {
		go func() {
			for ws := range st.Resize {
				if err := setWinsize(master, ws); err != nil && errors.Is(err, fs.ErrClosed) {
					return
				}
			}
		}()
	}
}

func copyBuffer(dst io.Writer, src io.Reader) (int64, error) {
	return io.CopyBuffer(dst, src, make([]byte, 32<<10))
}

func setWinsize(f *os.File, ws exec.WindowSize) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
	})
	return errors.Join(err, serr)
}

// volumeSource returns the host directory holding a volume's content.
func (s *Store) volumeSource(name string) string {
	return filepath.Join(s.volumeDir(name), "_data")
}

// prepareMounts turns the container's mounts into sandbox mounts: named
// volumes made when missing and filled from the image when empty, bind
// sources made when missing.
func (s *Store) prepareMounts(ctx context.Context, cfg *Config, lowers []snapshot.Snapshot) ([]snapshot.Mount, error) {
	var out []snapshot.Mount
	for _, m := range cfg.Mounts {
		sm := snapshot.Mount{Target: m.Destination}
		switch m.Type {
		case MountBind:
			if _, err := os.Stat(m.Source); errors.Is(err, fs.ErrNotExist) {
				if err := os.MkdirAll(m.Source, 0o755); err != nil {
					return nil, fmt.Errorf("making bind mount source: %w", err)
				}
			}
			sm.Type, sm.Source, sm.Options = "bind", m.Source, []string{"rbind"}
		case MountVolume:
			v, _, err := s.ensureVolume(ctx, m.Source, m.Anonymous)
			if err != nil {
				return nil, err
			}
			if err := s.fillVolume(ctx, lowers, m.Destination, v.Mountpoint); err != nil {
				return nil, fmt.Errorf("copying the image's %s into volume %s: %w", m.Destination, m.Source, err)
			}
			sm.Type, sm.Source, sm.Options = "bind", v.Mountpoint, []string{"rbind"}
		case MountTmpfs:
			sm.Type, sm.Source = "tmpfs", "tmpfs"
			sm.Options = append([]string{"nosuid", "nodev", "noexec"}, m.Options...)
			if !hasOption(m.Options, "mode=") {
				sm.Options = append(sm.Options, "mode=1777")
			}
		default:
			return nil, fmt.Errorf("unknown mount type %q", m.Type)
		}
		if m.ReadOnly {
			sm.Options = append(sm.Options, "ro")
		}
		out = append(out, sm)
	}
	return out, nil
}

func hasOption(opts []string, prefix string) bool {
	for _, o := range opts {
		if strings.HasPrefix(o, prefix) {
			return true
		}
	}
	return false
}

// monitorRequest is the payload of the detached monitor helper.
type monitorRequest struct {
	Root string `json:"root"`
	ID   string `json:"id"`
}

// startReport is what a detached monitor tells `run -d`: that the command
// started, or how the container ended before that.
type startReport struct {
	Started bool     `json:"started,omitempty"`
	Exited  bool     `json:"exited,omitempty"`
	Code    int      `json:"code,omitempty"`
	Stderr  []string `json:"stderr,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// monitorHelper is the detached monitor process (see StartDetached).
func monitorHelper(payload []byte) error {
	fd := exec.FirstSpawnFD
	unix.CloseOnExec(fd)
	report := os.NewFile(uintptr(fd), "report")
	var once sync.Once
	send := func(r startReport) {
		once.Do(func() {
			_ = json.NewEncoder(report).Encode(r)
			report.Close()
		})
	}
	var req monitorRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		send(startReport{Error: err.Error()})
		return err
	}
	s, err := Open(req.Root)
	if err != nil {
		send(startReport{Error: err.Error()})
		return err
	}
	var streams Streams
	// A detached container with -i keeps a stdin that never ends (nobody
	// attaches to it later), so a shell waits instead of exiting.
	r, w, err := os.Pipe()
	if err != nil {
		send(startReport{Error: err.Error()})
		return err
	}
	defer w.Close()
	streams.Stdin = r
	streams.Started = func() { send(startReport{Started: true}) }
	c, err := s.load(req.ID)
	if err != nil {
		send(startReport{Error: err.Error()})
		return err
	}
	ctx := context.Background()
	code, err := s.monitor(ctx, c, streams)
	r.Close()
	if err != nil {
		send(startReport{Error: err.Error()})
	} else {
		// Told before a removal (--rm) takes the log away.
		send(startReport{Exited: true, Code: code, Stderr: logTail(c.Dir, 5)})
	}
	if c.Config.AutoRemove {
		if rerr := s.Remove(ctx, c.ID(), RemoveOptions{Volumes: true}); rerr != nil && !errors.Is(rerr, ErrNotFound) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// helperMonitor and helperVolumeInit are the exec helper names this
// package registers (see Helpers).
const (
	helperMonitor    = "container-monitor"
	helperVolumeInit = "container-volume-init"
)

// Helpers returns the exec helper roles of the package, for exec.Child.
func Helpers() map[string]func(payload []byte) error {
	return map[string]func([]byte) error{
		helperMonitor:    monitorHelper,
		helperVolumeInit: volumeInitHelper,
	}
}

// StartResult is how a detached start went.
type StartResult struct {
	// Exited is true when the container ended before its command could
	// start (a missing command: 127); Code is then its exit status and
	// Stderr the last lines it wrote.
	Exited bool
	Code   int
	Stderr []string
}

// StartDetached starts the created container under a monitor process of
// its own that outlives the caller, and returns once its command has
// started (or the container ended or failed before that).
func (s *Store) StartDetached(ctx context.Context, id string) (StartResult, error) {
	c, err := s.load(id)
	if err != nil {
		return StartResult{}, err
	}
	payload, err := json.Marshal(monitorRequest{Root: s.root, ID: c.ID()})
	if err != nil {
		return StartResult{}, err
	}
	out, err := os.OpenFile(filepath.Join(c.Dir, "monitor.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return StartResult{}, err
	}
	defer out.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return StartResult{}, err
	}
	defer r.Close()
	_, err = exec.Spawn(exec.Helper{Name: helperMonitor, Payload: payload}, out, w)
	w.Close()
	if err != nil {
		return StartResult{}, err
	}
	type result struct {
		rep startReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		var rep startReport
		err := json.NewDecoder(r).Decode(&rep)
		done <- result{rep, err}
	}()
	var res result
	select {
	case <-ctx.Done():
		return StartResult{}, ctx.Err()
	case res = <-done:
	}
	switch {
	case res.err != nil:
		msg, _ := os.ReadFile(filepath.Join(c.Dir, "monitor.log"))
		return StartResult{}, fmt.Errorf("the container's monitor ended without a word: %v %s", res.err, strings.TrimSpace(string(msg)))
	case res.rep.Error != "":
		return StartResult{}, errors.New(res.rep.Error)
	case res.rep.Exited:
		return StartResult{Exited: true, Code: res.rep.Code, Stderr: res.rep.Stderr}, nil
	}
	return StartResult{}, nil
}
