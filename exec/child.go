package exec

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Child runs the child role when os.Args mark this process as a strata
// sandbox child, and then exits the process; otherwise it returns false.
// Call it first thing in main, before flag parsing. helpers maps the names
// accepted by [RunHelper] to their functions.
func Child(helpers map[string]func(payload []byte) error) bool {
	if len(os.Args) != 3 || os.Args[0] != childArgv0 || os.Args[1] != childMarker {
		return false
	}
	os.Exit(childMain(os.Args[2], helpers))
	return true
}

// childMain reads the config and runs the role; it returns the exit code.
func childMain(role string, helpers map[string]func([]byte) error) int {
	// The command must not inherit the pipes to the parent.
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	cfgFile := os.NewFile(3, "config")
	errFile := os.NewFile(4, "errors")
	if cfgFile == nil || errFile == nil {
		fmt.Fprintln(os.Stderr, "strata-init: missing parent pipes")
		return 1
	}
	report := func(err error) int {
		fmt.Fprintf(errFile, "%v\n", err)
		return 1
	}

	var cfg config
	data, err := io.ReadAll(cfgFile)
	cfgFile.Close()
	if err != nil {
		return report(fmt.Errorf("reading config: %w", err))
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return report(fmt.Errorf("decoding config: %w", err))
	}
	if cfg.Role != role {
		return report(fmt.Errorf("config is for role %q, not %q", cfg.Role, role))
	}
	// Neither may reach the command either.
	for _, fd := range []int{cfg.ConsoleFD, cfg.StartedFD} {
		if fd > 0 {
			unix.CloseOnExec(fd)
		}
	}
	// Nothing we mount may propagate back to the host's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return report(fmt.Errorf("making / private: %w", err))
	}
	switch role {
	case roleRun:
		code, err := runInit(&cfg)
		if err != nil {
			return report(err)
		}
		return code
	case roleHelper:
		if err := runHelper(&cfg, helpers); err != nil {
			return report(err)
		}
		return 0
	case roleEnter:
		code, err := runEnter(&cfg)
		if err != nil {
			return report(err)
		}
		return code
	default:
		return report(fmt.Errorf("unknown child role %q", role))
	}
}

// runHelper makes the mounts and calls the named function.
func runHelper(cfg *config, helpers map[string]func([]byte) error) error {
	fn := helpers[cfg.Name]
	if fn == nil {
		return fmt.Errorf("no helper registered as %q", cfg.Name)
	}
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("getting working dir: %w", err)
	}
	if cfg.SnapshotRoot != "" {
		if err := os.Chdir(cfg.SnapshotRoot); err != nil {
			return fmt.Errorf("entering snapshot root: %w", err)
		}
	}
	for _, m := range cfg.Mounts {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return fmt.Errorf("making mount point: %w", err)
		}
		if err := mountOne(m, m.Target); err != nil {
			return err
		}
	}
	if err := os.Chdir(wd); err != nil {
		return fmt.Errorf("restoring working dir: %w", err)
	}
	return fn(cfg.Payload)
}
