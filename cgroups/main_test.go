package cgroups

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a helper process instead of
// running tests: "hog" eats memory, "spin" burns CPU. Both wait for a line
// on stdin first, so the test can add them to a group before they start.
const helperEnv = "STRATA_CGROUPS_TEST_HELPER"

func TestMain(m *testing.M) {
	role := os.Getenv(helperEnv)
	if role == "" {
		// Processes a test kills lose their parent shell first; as a
		// subreaper the test binary inherits and reaps them instead of
		// leaving zombies to a PID 1 that may never wait for them.
		if os.Geteuid() == 0 {
			unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
		}
		os.Exit(m.Run())
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "helper gate:", err)
		os.Exit(3)
	}
	switch role {
	case "hog":
		// Touch every page of 256 MB, keeping it all reachable.
		var keep [][]byte
		for range 256 {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("survived", len(keep))
	case "spin":
		x := uint64(1)
		for i := range 100_000_000 {
			x = x*6364136223846793005 + uint64(i)
		}
		fmt.Println(x)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", role)
		os.Exit(3)
	}
	os.Exit(0)
}

// requireCgroups skips unless the test can create cgroups.
func requireCgroups(t *testing.T) Layout {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	l, err := DetectLayout()
	if err != nil {
		t.Skipf("no usable cgroups: %v", err)
	}
	return l
}

// testName returns a group name under a parent unique to this test, and
// removes the parent (and the group, if a failed test left it) from every
// hierarchy at the end so the machine is left as it was.
func testName(t *testing.T, l Layout) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	parent := "strata-test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		mounts := []string{l.Unified}
		for _, m := range l.Controllers {
			mounts = append(mounts, m)
		}
		slices.Sort(mounts)
		for _, m := range slices.Compact(mounts) {
			if m == "" {
				continue
			}
			os.Remove(filepath.Join(m, parent, "c"))
			os.Remove(filepath.Join(m, parent))
		}
	})
	return parent + "/c"
}

// deleteAtEnd kills and deletes g when the test ends, whatever happened.
func deleteAtEnd(t *testing.T, g *Group) {
	t.Cleanup(func() {
		ctx := context.Background()
		if err := g.Kill(ctx); err != nil {
			t.Errorf("cleanup kill: %v", err)
		}
		reapOrphans()
		if err := g.Delete(ctx); err != nil {
			t.Errorf("cleanup delete: %v", err)
		}
	})
}

// started is a process started by startInGroup.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
}

// startInGroup starts cmd, adds it to a group with add (nil: cmd starts
// in one by itself), and only then lets it run past its stdin gate. With
// ready, it returns once cmd has printed a line "ready" (its stdout is then
// not kept).
func startInGroup(t *testing.T, cmd *exec.Cmd, add func(pid int) error, ready bool) *started {
	t.Helper()
	s := &started{cmd: cmd, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	cmd.Stderr = s.stderr
	var out io.Reader
	if ready {
		r, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		out = r
	} else {
		cmd.Stdout = s.stdout
	}
	gate, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		reapOrphans()
	})
	if add != nil {
		if err := add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(gate, "go\n")
	gate.Close()
	if ready {
		br := bufio.NewReader(out)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("helper ended before it was ready: %v; stderr: %s", err, s.stderr)
			}
			if line == "ready\n" {
				break
			}
		}
		go io.Copy(io.Discard, br)
	}
	return s
}

// helper is the test binary run as helper role.
func helper(t *testing.T, role string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	return cmd
}

// shell runs script after the stdin gate.
func shell(script string) *exec.Cmd {
	return exec.Command("/bin/sh", "-c", "read gate; "+script)
}

// reapOrphans waits for every dead child the test binary inherited as
// subreaper. Call it only once every exec.Cmd of the test was waited for,
// or it could take a status that Cmd.Wait expects.
func reapOrphans() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
