package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/strata-build/strata/container"
	"github.com/strata-build/strata/netns"
)

// openContainers parses the flags every container command takes besides
// its own and opens the store.
func openContainers(g *globals, fs *pflag.FlagSet, args []string) (*container.Store, error) {
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	return container.Open(g.root)
}

// eachContainer runs fn for every named container, printing errors and
// going on like docker does; it fails if any failed.
func eachContainer(refs []string, fn func(ref string) error) error {
	failed := 0
	for _, ref := range refs {
		if err := fn(ref); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d containers failed", failed, len(refs))
	}
	return nil
}

func runPs(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("ps", pflag.ContinueOnError)
	all := fs.BoolP("all", "a", false, "show every container, not only running ones")
	quiet := fs.BoolP("quiet", "q", false, "print only IDs")
	noTrunc := fs.Bool("no-trunc", false, "do not shorten IDs and commands")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("ps takes no arguments")
	}
	list, err := st.List()
	if err != nil {
		return err
	}
	now := time.Now()
	rows := [][]string{{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"}}
	for _, c := range list {
		if !*all && c.State.Status != container.StatusRunning {
			continue
		}
		id := c.ShortID()
		if *noTrunc {
			id = c.ID()
		}
		if *quiet {
			fmt.Println(id)
			continue
		}
		cmd := strconv.Quote(strings.Join(c.Config.Args, " "))
		if !*noTrunc && len(cmd) > 22 {
			cmd = cmd[:19] + "…\""
		}
		rows = append(rows, []string{id, c.Config.Image, cmd,
			units.HumanDuration(now.Sub(c.Config.Created)) + " ago",
			statusText(c, now), portsText(c.State.Ports), c.Config.Name})
	}
	if !*quiet {
		writeTable(os.Stdout, rows)
	}
	return nil
}

// statusText is docker ps's STATUS column.
func statusText(c *container.Container, now time.Time) string {
	s := c.State
	switch s.Status {
	case container.StatusRunning:
		return "Up " + units.HumanDuration(now.Sub(s.StartedAt))
	case container.StatusExited:
		return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, units.HumanDuration(now.Sub(s.FinishedAt)))
	case container.StatusCreated:
		return "Created"
	case container.StatusDead:
		return "Dead"
	case container.StatusRemoving:
		return "Removal In Progress"
	}
	return string(s.Status)
}

func portsText(ports []netns.PortMapping) string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}

func runLogs(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("logs", pflag.ContinueOnError)
	follow := fs.BoolP("follow", "f", false, "keep printing output until the container stops")
	tail := fs.String("tail", "all", "only the last N lines")
	stamps := fs.BoolP("timestamps", "t", false, "show each line's time")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("exactly one CONTAINER is required")
	}
	n := -1
	if *tail != "all" {
		if n, err = strconv.Atoi(*tail); err != nil || n < 0 {
			return usagef("--tail: want a number of lines or all, not %q", *tail)
		}
	}
	err = st.Logs(ctx, fs.Arg(0), container.LogOptions{Follow: *follow, Tail: n, Timestamps: *stamps}, os.Stdout, os.Stderr)
	if errors.Is(err, context.Canceled) {
		return nil // ^C ends -f
	}
	return err
}

func runExec(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("exec", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	interactive := fs.BoolP("interactive", "i", false, "connect stdin")
	tty := fs.BoolP("tty", "t", false, "allocate a pseudo-terminal")
	env := fs.StringArrayP("env", "e", nil, "set an environment variable K=V")
	user := fs.StringP("user", "u", "", "user (name|uid[:group|gid])")
	workdir := fs.StringP("workdir", "w", "", "working directory")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("a CONTAINER and a COMMAND are required")
	}
	o := container.ExecOptions{
		Args:        fs.Args()[1:],
		Env:         container.ParseEnv(*env),
		User:        *user,
		WorkingDir:  *workdir,
		Tty:         *tty,
		Interactive: *interactive,
		Streams:     container.Streams{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr},
	}
	if *tty {
		restore, resize, size := attachTerminal(*interactive)
		defer restore()
		o.Streams.Size, o.Streams.Resize = size, resize
	}
	code, err := st.Exec(ctx, fs.Arg(0), o)
	if err != nil {
		return err
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}

func runStop(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("stop", pflag.ContinueOnError)
	secs := fs.IntP("time", "t", -1, "seconds to wait before killing (default: the container's, 10)")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("at least one CONTAINER is required")
	}
	timeout := time.Duration(-1)
	if *secs >= 0 {
		timeout = time.Duration(*secs) * time.Second
	}
	return eachContainer(fs.Args(), func(ref string) error {
		if err := st.Stop(ctx, ref, timeout); err != nil {
			return err
		}
		fmt.Println(ref)
		return nil
	})
}

func runKill(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("kill", pflag.ContinueOnError)
	sigName := fs.StringP("signal", "s", "KILL", "signal to send")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("at least one CONTAINER is required")
	}
	sig, err := container.ParseSignal(*sigName)
	if err != nil {
		return usageError{err}
	}
	return eachContainer(fs.Args(), func(ref string) error {
		if err := st.Signal(ctx, ref, sig); err != nil {
			return err
		}
		if sig == syscall.SIGKILL {
			// Like docker kill: return once it is dead.
			if _, err := st.Wait(ctx, ref); err != nil {
				return err
			}
		}
		fmt.Println(ref)
		return nil
	})
}

func runRm(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("rm", pflag.ContinueOnError)
	force := fs.BoolP("force", "f", false, "kill a running container first")
	vols := fs.BoolP("volumes", "v", false, "remove the container's anonymous volumes too")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("at least one CONTAINER is required")
	}
	return eachContainer(fs.Args(), func(ref string) error {
		if err := st.Remove(ctx, ref, container.RemoveOptions{Force: *force, Volumes: *vols}); err != nil {
			return err
		}
		fmt.Println(ref)
		return nil
	})
}

// runContainerInspect prints containers as a JSON array, or each through
// a Go template (-f '{{.State.ExitCode}}').
func runContainerInspect(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("container inspect", pflag.ContinueOnError)
	format := fs.StringP("format", "f", "", "Go template applied to each container")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("at least one CONTAINER is required")
	}
	var tmpl *template.Template
	if *format != "" {
		if tmpl, err = template.New("format").Funcs(template.FuncMap{"json": toJSON}).Parse(*format); err != nil {
			return usageError{err}
		}
	}
	var all []*container.Container
	err = eachContainer(fs.Args(), func(ref string) error {
		c, err := st.Get(ref)
		if err != nil {
			return err
		}
		if tmpl != nil {
			if err := tmpl.Execute(os.Stdout, c); err != nil {
				return err
			}
			fmt.Println()
			return nil
		}
		all = append(all, c)
		return nil
	})
	if tmpl == nil && len(all) > 0 {
		b, jerr := json.MarshalIndent(all, "", "  ")
		if jerr != nil {
			return jerr
		}
		fmt.Println(string(b))
	}
	return err
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func runStats(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("stats", pflag.ContinueOnError)
	noStream := fs.Bool("no-stream", false, "print once instead of every second")
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	refs := fs.Args()
	if len(refs) == 0 {
		list, err := st.List()
		if err != nil {
			return err
		}
		for _, c := range list {
			if c.State.Status == container.StatusRunning {
				refs = append(refs, c.ID())
			}
		}
	}
	for {
		if err := printStats(ctx, os.Stdout, st, refs); err != nil {
			return err
		}
		if *noStream {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// printStats prints one table; CPU % is measured over half a second.
func printStats(ctx context.Context, w io.Writer, st *container.Store, refs []string) error {
	first := make([]time.Duration, len(refs))
	for i, ref := range refs {
		if _, s, err := st.Stats(ref); err == nil {
			first[i] = s.CPUUsage
		}
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(500 * time.Millisecond):
	}
	elapsed := time.Since(start)
	rows := [][]string{{"CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"}}
	var errs []error
	for i, ref := range refs {
		c, s, err := st.Stats(ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cpu := float64(s.CPUUsage-first[i]) / float64(elapsed) * 100
		used := s.MemoryUsage - s.MemoryInactiveFile
		limit, memPct := "unlimited", "--"
		if s.MemoryLimit > 0 && s.MemoryLimit < 1<<60 {
			limit = units.BytesSize(float64(s.MemoryLimit))
			memPct = fmt.Sprintf("%.2f%%", float64(used)/float64(s.MemoryLimit)*100)
		}
		rows = append(rows, []string{c.ShortID(), c.Config.Name, fmt.Sprintf("%.2f%%", cpu),
			units.BytesSize(float64(used)) + " / " + limit, memPct, strconv.FormatInt(s.PidsCurrent, 10)})
	}
	writeTable(w, rows)
	return errors.Join(errs...)
}

func runVolume(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		return usagef("volume needs a subcommand: create, ls, inspect or rm")
	}
	sub, args := args[0], args[1:]
	fs := pflag.NewFlagSet("volume "+sub, pflag.ContinueOnError)
	var quiet *bool
	if sub == "ls" {
		quiet = fs.BoolP("quiet", "q", false, "print only names")
	}
	st, err := openContainers(g, fs, args)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if fs.NArg() > 1 {
			return usagef("volume create takes at most one NAME")
		}
		name := fs.Arg(0)
		if name == "" {
			var b [32]byte
			if _, err := io.ReadFull(randReader(), b[:]); err != nil {
				return err
			}
			name = fmt.Sprintf("%x", b)
		}
		v, err := st.CreateVolume(ctx, name)
		if err != nil {
			return err
		}
		fmt.Println(v.Name)
	case "ls":
		vols, err := st.Volumes()
		if err != nil {
			return err
		}
		rows := [][]string{{"DRIVER", "VOLUME NAME"}}
		for _, v := range vols {
			if *quiet {
				fmt.Println(v.Name)
				continue
			}
			rows = append(rows, []string{"local", v.Name})
		}
		if !*quiet {
			writeTable(os.Stdout, rows)
		}
	case "inspect":
		if fs.NArg() == 0 {
			return usagef("at least one volume NAME is required")
		}
		var out []container.Volume
		for _, n := range fs.Args() {
			v, err := st.Volume(n)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	case "rm":
		if fs.NArg() == 0 {
			return usagef("at least one volume NAME is required")
		}
		failed := 0
		for _, n := range fs.Args() {
			if err := st.RemoveVolume(ctx, n); err != nil {
				fmt.Fprintln(os.Stderr, "error:", err)
				failed++
				continue
			}
			fmt.Println(n)
		}
		if failed > 0 {
			return fmt.Errorf("%d volume(s) could not be removed", failed)
		}
	default:
		return usagef("unknown volume subcommand %q: create, ls, inspect or rm", sub)
	}
	return nil
}

// runContainer dispatches `strata container SUBCOMMAND`, Docker's long
// forms (container inspect stays apart from the image inspect command).
func runContainer(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		return usagef("container needs a subcommand: run, ls, ps, logs, exec, stop, kill, rm, inspect, stats")
	}
	sub, rest := args[0], args[1:]
	fn := map[string]func(context.Context, *globals, []string) error{
		"run": runRun, "ls": runPs, "ps": runPs, "logs": runLogs, "exec": runExec, "stop": runStop,
		"kill": runKill, "rm": runRm, "inspect": runContainerInspect, "stats": runStats,
	}[sub]
	if fn == nil {
		return usagef("unknown container subcommand %q", sub)
	}
	return fn(ctx, g, rest)
}

// randReader is where volume create takes a random name from.
func randReader() io.Reader { return rand.Reader }
