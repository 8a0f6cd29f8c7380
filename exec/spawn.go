package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// FirstSpawnFD is the descriptor number a spawned helper finds the first
// of [Spawn]'s files at; the others follow in order.
const FirstSpawnFD = 5

// Spawn starts the helper registered as h.Name (see [Child]) in the
// background and returns its PID without waiting for it: it runs in a new
// session and a new mount namespace (h.Mounts are made there), is not
// killed when the caller exits, and has stdin on /dev/null and stdout and
// stderr on out (nil: /dev/null). files become its descriptors
// FirstSpawnFD, FirstSpawnFD+1, ... (not close-on-exec: the helper marks
// them); they are how the helper reports back, since Spawn itself only
// reports failing to start it. The caller should not wait for the PID: the
// helper outlives it (a caller that lives on reaps nothing and leaves a
// zombie until it exits).
func Spawn(h Helper, out *os.File, files ...*os.File) (int, error) {
	if h.Name == "" {
		return 0, errors.New("exec: no helper name given")
	}
	cfg := config{
		Role:         roleHelper,
		SnapshotRoot: h.SnapshotRoot,
		Mounts:       h.Mounts,
		Name:         h.Name,
		Payload:      h.Payload,
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return 0, fmt.Errorf("encoding helper config: %w", err)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("making config pipe: %w", err)
	}
	defer cfgR.Close()
	defer cfgW.Close()
	// Nobody reads the helper's errors: it reports through files. Its
	// error descriptor still has to be valid, so it gets /dev/null.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer devNull.Close()
	if out == nil {
		out = devNull
	}
	cmd := osexec.Command("/proc/self/exe")
	cmd.Args = []string{childArgv0, childMarker, roleHelper}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = "/"
	cmd.ExtraFiles = append([]*os.File{cfgR, devNull}, files...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting helper %s: %w", h.Name, err)
	}
	cfgR.Close()
	pid := cmd.Process.Pid
	// The pipe holds far more than a config; the write cannot block.
	if _, err := cfgW.Write(data); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("sending config to helper %s: %w", h.Name, err)
	}
	cfgW.Close()
	_ = cmd.Process.Release()
	return pid, nil
}
