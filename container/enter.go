package container

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/strata-build/strata/cgroups"
	"github.com/strata-build/strata/exec"
)

// ExecOptions describe a command run in a running container.
type ExecOptions struct {
	Args       []string
	Env        []string // added to the container's environment
	User       string   // "" is the container's user
	WorkingDir string   // "" is the container's working directory
	Tty        bool     // a pseudo-terminal (TERM=xterm unless Env sets TERM)
	// Interactive connects Streams.Stdin; without it stdin is /dev/null.
	Interactive bool
	Streams     Streams // Running and Started are not used
}

// Exec runs a command in the running container (docker exec): in its
// namespaces and cgroup, under its root, with the container's default
// capabilities and no_new_privs. It returns the command's exit status.
// Its output goes to the streams only, not to the container's log.
func (s *Store) Exec(ctx context.Context, ref string, o ExecOptions) (int, error) {
	c, err := s.Get(ref)
	if err != nil {
		return -1, err
	}
	pid, ok := running(c)
	if !ok {
		return -1, notRunning(c)
	}
	if len(o.Args) == 0 {
		return -1, fmt.Errorf("no command given")
	}
	env := c.Config.Env
	if o.Tty {
		env = mergeEnv(env, []string{"TERM=xterm"})
	}
	env = mergeEnv(env, o.Env)
	user, cwd := c.Config.User, c.Config.WorkingDir
	if o.User != "" {
		user = o.User
	}
	if o.WorkingDir != "" {
		cwd = o.WorkingDir
	}
	spec := exec.EnterSpec{
		PID:             pid,
		Process:         exec.Process{Args: o.Args, Env: env, Cwd: cwd, User: user},
		NoNewPrivileges: true,
	}
	if c.State.Cgroup != "" {
		spec.Created = func(helper int) error {
			g, err := cgroups.Load(c.State.Cgroup)
			if err != nil {
				return err
			}
			return g.Add(helper)
		}
	}
	var console sync.WaitGroup
	if o.Tty {
		spec.Terminal, spec.WindowSize = true, o.Streams.Size
		spec.Console = func(master *os.File) {
			console.Add(1)
			attachConsole(master, o.Interactive, o.Streams, nil, &console)
		}
	} else {
		spec.Process.Stdout, spec.Process.Stderr = o.Streams.Stdout, o.Streams.Stderr
		if o.Interactive {
			spec.Process.Stdin = o.Streams.Stdin
		}
	}
	code, err := exec.Enter(ctx, spec)
	console.Wait()
	return code, err
}
