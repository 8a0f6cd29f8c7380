// Command strata builds container images from Dockerfiles without a daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/strata-build/strata/builder"
	"github.com/strata-build/strata/exec"
)

const defaultRoot = "/var/lib/strata"

type command struct {
	name, usage string
	run         func(ctx context.Context, g *globals, args []string) error
}

// globals are the flags every command takes.
type globals struct {
	root string
}

func commands() []command {
	return []command{
		{"build", "build [OPTIONS] CONTEXT", runBuild},
		{"import", "import [-t REF]... [-c INSTRUCTION]... ROOTFS", runImport},
		{"registry", "registry serve [--addr HOST:PORT] [--dir DIR]", runRegistry},
		{"images", "images", runImages},
		{"push", "push [--insecure-registry HOST:PORT] IMAGE [DESTINATION]", runPush},
		{"tag", "tag SOURCE TARGET", runTag},
		{"prune", "prune [--all] [--keep-storage SIZE] [--dry-run] [-f]", runPrune},
		{"du", "du [-v]", runDu},
		{"pull", "pull [--platform OS/ARCH] [--insecure-registry HOST:PORT] IMAGE", runPull},
		{"rmi", "rmi IMAGE...", runRmi},
		{"inspect", "inspect [--format json] IMAGE", runInspect},
		{"history", "history [--no-trunc] IMAGE", runHistory},
		{"login", "login [-u USER] [-p PASS | --password-stdin] REGISTRY", runLogin},
		{"logout", "logout REGISTRY", runLogout},
		{"run", "run [OPTIONS] IMAGE [COMMAND] [ARG...]", runRun},
		{"ps", "ps [-a] [-q] [--no-trunc]", runPs},
		{"logs", "logs [-f] [--tail N] [-t] CONTAINER", runLogs},
		{"exec", "exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] CONTAINER COMMAND [ARG...]", runExec},
		{"stop", "stop [-t SECS] CONTAINER...", runStop},
		{"kill", "kill [-s SIGNAL] CONTAINER...", runKill},
		{"rm", "rm [-f] [-v] CONTAINER...", runRm},
		{"stats", "stats [--no-stream] [CONTAINER...]", runStats},
		{"volume", "volume create|ls|inspect|rm [NAME...]", runVolume},
		{"container", "container run|ls|logs|exec|stop|kill|rm|inspect|stats ...", runContainer},
	}
}

func main() {
	if exec.Child(childHelpers()) {
		return
	}
	os.Exit(mainExit())
}

func mainExit() int {
	g := &globals{root: os.Getenv("STRATA_ROOT")}
	if g.root == "" {
		g.root = defaultRoot
	}
	fs := pflag.NewFlagSet("strata", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.StringVar(&g.root, "root", g.root, "state directory (env STRATA_ROOT)")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "strata:", err)
		return 2
	}
	args := fs.Args()
	if len(args) == 0 {
		usage(fs)
		return 2
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, g, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, pflag.ErrHelp):
			return 0
		case ctx.Err() != nil:
			fmt.Fprintln(os.Stderr, "strata: interrupted")
			return 130
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "strata %s: %v\nusage: strata %s\n", c.name, ue.err, c.usage)
			return 2
		}
		printError(err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "strata: unknown command %q\n", args[0])
	usage(fs)
	return 2
}

func usage(fs *pflag.FlagSet) {
	fmt.Fprintln(os.Stderr, "usage: strata [--root DIR] COMMAND [ARGS]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  strata %s\n", c.usage)
	}
	fmt.Fprintln(os.Stderr, "\nglobal flags:")
	fmt.Fprint(os.Stderr, fs.FlagUsages())
}

// usageError marks a bad command line.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// printError prints err on one line; a failing RUN also shows its last
// output lines first, as BuildKit does.
func printError(err error) {
	if ee, ok := builder.IsExit(err); ok && len(ee.Tail) > 0 {
		fmt.Fprintln(os.Stderr, "------")
		for _, l := range ee.Tail {
			fmt.Fprintln(os.Stderr, " > "+l)
		}
		fmt.Fprintln(os.Stderr, "------")
	}
	fmt.Fprintln(os.Stderr, "error:", err)
}
