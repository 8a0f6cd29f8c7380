package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/strata-build/strata/builder"
	"github.com/strata-build/strata/cgroups"
	"github.com/strata-build/strata/container"
	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/netns"
	"github.com/strata-build/strata/registry"
)

// childHelpers are the exec helper roles of every package that has some;
// main passes them to exec.Child.
func childHelpers() map[string]func([]byte) error {
	m := builder.Helpers()
	maps.Copy(m, container.Helpers())
	return m
}

// exitRunFailed is docker run's status when the container could not be
// run at all (its own statuses are the command's).
const exitRunFailed = 125

func runRun(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	// Everything after IMAGE belongs to the command.
	fs.SetInterspersed(false)
	var (
		rm          = fs.Bool("rm", false, "remove the container when it exits")
		detach      = fs.BoolP("detach", "d", false, "run in the background and print the container ID")
		name        = fs.String("name", "", "name the container")
		env         = fs.StringArrayP("env", "e", nil, "set an environment variable K=V (K alone takes it from here)")
		envFiles    = fs.StringArray("env-file", nil, "read environment variables from a file")
		workdir     = fs.StringP("workdir", "w", "", "working directory in the container")
		user        = fs.StringP("user", "u", "", "user (name|uid[:group|gid])")
		volumes     = fs.StringArrayP("volume", "v", nil, "bind mount /HOST:/CTR[:ro] or named volume NAME:/CTR[:ro]")
		tmpfs       = fs.StringArray("tmpfs", nil, "mount a tmpfs: /CTR[:OPTIONS]")
		mounts      = fs.StringArray("mount", nil, "type=bind|volume|tmpfs,source=…,target=…[,readonly]")
		hostname    = fs.StringP("hostname", "h", "", "container host name")
		network     = fs.String("network", "bridge", "network: bridge, host or none")
		publish     = fs.StringArrayP("publish", "p", nil, "publish a port: [IP:][HOSTPORT:]CTRPORT[/udp]")
		memory      = fs.StringP("memory", "m", "", "memory limit (e.g. 32m, 1g)")
		memorySwap  = fs.String("memory-swap", "", "memory+swap limit; -1 for unlimited swap")
		cpus        = fs.Float64("cpus", 0, "CPUs the container may use (e.g. 0.5)")
		pidsLimit   = fs.Int64("pids-limit", 0, "maximum number of tasks (-1 or 0: unlimited)")
		readOnly    = fs.Bool("read-only", false, "mount the root filesystem read-only")
		initPID1    = fs.Bool("init", false, "run a small init as PID 1 that reaps zombies and forwards signals")
		interactive = fs.BoolP("interactive", "i", false, "keep stdin open")
		tty         = fs.BoolP("tty", "t", false, "allocate a pseudo-terminal")
		entrypoint  = fs.String("entrypoint", "", "override the image's ENTRYPOINT (\"\" clears it)")
		stopSignal  = fs.String("stop-signal", "", "signal stop sends first (default: the image's STOPSIGNAL, else SIGTERM)")
		stopTimeout = fs.Int("stop-timeout", 0, "seconds stop waits before killing (default 10)")
		insecure    = fs.StringArray("insecure-registry", nil, "use plain HTTP for this HOST:PORT when pulling")
		mirrors     = fs.StringArray("registry-mirror", nil, "pull REGISTRY's images from MIRROR first (REGISTRY=MIRROR)")
		platform    = fs.String("platform", "", "platform to pull (linux/amd64 by default)")
	)
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() < 1 {
		return usagef("an IMAGE is required")
	}
	o := container.Options{
		Name:        *name,
		Image:       fs.Arg(0),
		Cmd:         fs.Args()[1:],
		WorkingDir:  *workdir,
		User:        *user,
		Hostname:    *hostname,
		Tty:         *tty,
		OpenStdin:   *interactive,
		Init:        *initPID1,
		ReadOnly:    *readOnly,
		AutoRemove:  *rm,
		StopSignal:  *stopSignal,
		StopTimeout: *stopTimeout,
	}
	if fs.Changed("entrypoint") {
		o.Entrypoint = []string{}
		if *entrypoint != "" {
			o.Entrypoint = []string{*entrypoint}
		}
	}
	for _, f := range *envFiles {
		vars, err := container.ParseEnvFile(f)
		if err != nil {
			return usagef("--env-file: %v", err)
		}
		o.Env = append(o.Env, vars...)
	}
	o.Env = append(o.Env, container.ParseEnv(*env)...)
	for _, v := range *volumes {
		m, err := container.ParseVolume(v)
		if err != nil {
			return usageError{err}
		}
		o.Mounts = append(o.Mounts, m)
	}
	for _, v := range *tmpfs {
		m, err := container.ParseTmpfs(v)
		if err != nil {
			return usageError{err}
		}
		o.Mounts = append(o.Mounts, m)
	}
	for _, v := range *mounts {
		m, err := container.ParseMount(v)
		if err != nil {
			return usageError{err}
		}
		o.Mounts = append(o.Mounts, m)
	}
	mode, err := netns.ParseMode(*network)
	if err != nil {
		return usageError{err}
	}
	o.Network = mode
	for _, p := range *publish {
		ms, err := netns.ParsePort(p)
		if err != nil {
			return usageError{err}
		}
		o.Ports = append(o.Ports, ms...)
	}
	if o.Resources, err = parseResources(*memory, *memorySwap, *cpus, *pidsLimit); err != nil {
		return usageError{err}
	}
	mirrorMap, err := parseMirrors(*mirrors)
	if err != nil {
		return usageError{err}
	}
	o.Pull = registry.Options{Platform: *platform, Insecure: *insecure, Mirrors: mirrorMap}

	// The store lock keeps a prune away while the image is unpacked and
	// the container starts; a running container's layers are its own
	// business (see package container).
	release := holdStore(ctx, g)
	var releaseOnce sync.Once
	unhold := func() { releaseOnce.Do(release) }
	defer unhold()
	st, err := container.Open(g.root)
	if err != nil {
		return err
	}
	c, err := st.Create(ctx, o)
	if err != nil {
		return err
	}
	if *detach {
		res, err := st.StartDetached(ctx, c.ID())
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(exitRunFailed)
		}
		if res.Exited {
			for _, l := range res.Stderr {
				fmt.Fprintln(os.Stderr, l)
			}
			fmt.Fprintf(os.Stderr, "error: container %s exited with status %d before its command started\n", c.Config.Name, res.Code)
			os.Exit(res.Code)
		}
		fmt.Println(c.ID())
		return nil
	}
	code, err := runForeground(ctx, st, c, unhold)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if code < 0 {
			os.Exit(exitRunFailed)
		}
		// It ran; cleaning up after it failed. Its status still counts.
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}

// parseResources turns the resource flags into limits.
func parseResources(memory, memorySwap string, cpus float64, pids int64) (cgroups.Resources, error) {
	var r cgroups.Resources
	var err error
	if memory != "" {
		if r.MemoryBytes, err = container.ParseSize(memory); err != nil {
			return r, fmt.Errorf("--memory: %w", err)
		}
	}
	switch memorySwap {
	case "":
	case "-1":
		r.MemorySwapBytes = -1
	default:
		if r.MemorySwapBytes, err = container.ParseSize(memorySwap); err != nil {
			return r, fmt.Errorf("--memory-swap: %w", err)
		}
	}
	if cpus < 0 {
		return r, errors.New("--cpus must not be negative")
	}
	r.CPUs, r.PidsLimit = cpus, pids
	return r, nil
}

// runForeground is `strata run` without -d: this process is the
// container's monitor, with the terminal attached. Signals strata gets
// go to the container, as docker run's sig-proxy does.
func runForeground(ctx context.Context, st *container.Store, c *container.Container, started func()) (int, error) {
	streams := container.Streams{Stdout: os.Stdout, Stderr: os.Stderr, Started: started}
	if c.Config.OpenStdin {
		streams.Stdin = os.Stdin
	}
	var pidMu sync.Mutex
	pid := 0
	streams.Running = func(p int) {
		pidMu.Lock()
		pid = p
		pidMu.Unlock()
	}
	if c.Config.Tty {
		restore, resize, size := attachTerminal(c.Config.OpenStdin)
		defer restore()
		streams.Size, streams.Resize = size, resize
	}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigc)
	go func() {
		for sig := range sigc {
			pidMu.Lock()
			p := pid
			pidMu.Unlock()
			if p > 0 {
				_ = unix.Kill(p, sig.(syscall.Signal))
			}
		}
	}()
	// The container is not cancelled with ctx: its signals are forwarded
	// instead, and it ends on its own.
	return st.Run(context.WithoutCancel(ctx), c.ID(), streams)
}

// attachTerminal puts our terminal in raw mode when input goes to the
// container and reports its size and every later change. restore puts
// the terminal back.
func attachTerminal(input bool) (restore func(), resize <-chan exec.WindowSize, size exec.WindowSize) {
	restore = func() {}
	fd := -1
	for _, f := range []*os.File{os.Stdin, os.Stdout} {
		if term.IsTerminal(int(f.Fd())) {
			fd = int(f.Fd())
			break
		}
	}
	if fd < 0 {
		return restore, nil, size
	}
	if input && term.IsTerminal(int(os.Stdin.Fd())) {
		if old, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
			restore = func() { _ = term.Restore(int(os.Stdin.Fd()), old) }
		}
	}
	getSize := func() exec.WindowSize {
		w, h, err := term.GetSize(fd)
		if err != nil || w <= 0 || h <= 0 {
			return exec.WindowSize{}
		}
		return exec.WindowSize{Rows: uint16(h), Cols: uint16(w)}
	}
	size = getSize()
	ch := make(chan exec.WindowSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	go func() {
		for range winch {
			ws := getSize()
			select {
			case ch <- ws:
			default: // a newer size follows anyway
			}
		}
	}()
	prev := restore
	restore = func() {
		signal.Stop(winch)
		prev()
	}
	return restore, ch, size
}
