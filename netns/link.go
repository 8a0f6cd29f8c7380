package netns

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	osexec "os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// run runs a command and returns its stdout; a failure carries stderr.
func run(ctx context.Context, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := osexec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", &cmdError{cmd: name + " " + strings.Join(args, " "), msg: msg}
	}
	return stdout.String(), nil
}

// cmdError is a failed command with what it printed.
type cmdError struct{ cmd, msg string }

func (e *cmdError) Error() string { return e.cmd + ": " + e.msg }

// hasMsg reports whether err is a command failure whose message contains
// one of subs (used to tell "already there"/"not there" failures).
func hasMsg(err error, subs ...string) bool {
	var ce *cmdError
	if !errors.As(err, &ce) {
		return false
	}
	for _, s := range subs {
		if strings.Contains(ce.msg, s) {
			return true
		}
	}
	return false
}

func ip(ctx context.Context, args ...string) (string, error) {
	return run(ctx, nil, "ip", args...)
}

// linkExists reports whether the host has an interface called name.
func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// ensureBridge makes the bridge (once) with the gateway address, up.
func ensureBridge(ctx context.Context, cfg Config) error {
	if !linkExists(cfg.Bridge) {
		if _, err := ip(ctx, "link", "add", cfg.Bridge, "type", "bridge"); err != nil && !hasMsg(err, "File exists") {
			return fmt.Errorf("netns: making bridge: %w", err)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + cfg.Bridge + "/bridge"); err != nil {
		return fmt.Errorf("netns: %s exists and is not a bridge", cfg.Bridge)
	}
	gw := netip.PrefixFrom(cfg.gateway(), cfg.Subnet.Bits())
	// replace is add-or-keep, so this is idempotent.
	if _, err := ip(ctx, "addr", "replace", gw.String(), "dev", cfg.Bridge); err != nil {
		return fmt.Errorf("netns: addressing bridge: %w", err)
	}
	if _, err := ip(ctx, "link", "set", cfg.Bridge, "up"); err != nil {
		return fmt.Errorf("netns: bringing bridge up: %w", err)
	}
	return nil
}

// deleteLink removes an interface; a missing one is not an error.
func deleteLink(ctx context.Context, name string) error {
	if name == "" || !linkExists(name) {
		return nil
	}
	if _, err := ip(ctx, "link", "del", name); err != nil && !hasMsg(err, "Cannot find device") {
		return fmt.Errorf("netns: removing %s: %w", name, err)
	}
	return nil
}

// vethName is the host end's name: stable per bridge and container (so a
// Teardown after a crash finds it) and short enough for IFNAMSIZ.
func vethName(bridge, id string) string {
	sum := sha256.Sum256([]byte(bridge + "\x00" + id))
	return "vst" + hex.EncodeToString(sum[:])[:11]
}

// macFor derives the container's MAC from its address, as Docker does, so
// a reused address keeps its MAC and neighbours' ARP entries stay right.
func macFor(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("02:53:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// writeSysctl sets a sysctl through /proc/sys (of the calling thread's
// network namespace for net.*) unless it already has the value.
func writeSysctl(name, value string) error {
	p := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(p, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("netns: setting %s=%s: %w", name, value, err)
	}
	return nil
}

// nsHandle is an open network namespace of a process.
type nsHandle struct {
	fd  int
	pid int
}

// openNetns opens the network namespace of pid and refuses the caller's
// own: configuring that would rewire the host.
func openNetns(pid int) (*nsHandle, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("netns: invalid pid %d", pid)
	}
	path := "/proc/" + strconv.Itoa(pid) + "/ns/net"
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netns: opening network namespace of %d: %w", pid, err)
	}
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(fd, &theirs); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: %w", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: %w", err)
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: process %d is in this process's network namespace, not a container's own", pid)
	}
	return &nsHandle{fd: fd, pid: pid}, nil
}

func (h *nsHandle) close() { unix.Close(h.fd) }

// do runs fn on an OS thread that has entered the namespace. Processes
// started by fn (os/exec forks from the calling thread) and sockets it
// opens belong to the namespace. If the thread cannot return to the
// original namespace it stays locked, so the runtime discards it.
func (h *nsHandle) do(fn func() error) error {
	errc := make(chan error, 1)
	// A fresh goroutine: the caller's thread state is never touched.
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: opening own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(h.fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: entering network namespace of %d: %w", h.pid, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: leaving network namespace: %w", err))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
