package exec_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/snapshot"
)

// writeRequest is the payload of the "write" test helper.
type writeRequest struct {
	Path, Data string
}

func testHelpers() map[string]func([]byte) error {
	return map[string]func([]byte) error{
		"write": func(payload []byte) error {
			var req writeRequest
			if err := json.Unmarshal(payload, &req); err != nil {
				return err
			}
			return os.WriteFile(req.Path, []byte(req.Data), 0o644)
		},
		"fail": func([]byte) error {
			return errors.New("helper failed on purpose")
		},
		// report writes the payload and its session ID to the first
		// Spawn descriptor.
		"report": func(payload []byte) error {
			f := os.NewFile(uintptr(exec.FirstSpawnFD), "report")
			defer f.Close()
			sid, err := unix.Getsid(0)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(f, "%s sid=%d pid=%d", payload, sid, os.Getpid())
			return err
		},
	}
}

func TestMain(m *testing.M) {
	// The sandbox re-executes this test binary; Child exits in that case.
	exec.Child(testHelpers())
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts and namespaces")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs a static /bin/busybox to build a test rootfs")
	}
}

// testEnv is one overlay root: a busybox lower layer plus an empty upper.
type testEnv struct {
	dir, layers, lower, upper, work, tmp string
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	e := &testEnv{
		dir:    dir,
		layers: filepath.Join(dir, "layers"),
		lower:  filepath.Join(dir, "layers", "lower"),
		upper:  filepath.Join(dir, "active", "upper"),
		work:   filepath.Join(dir, "active", "work"),
		tmp:    filepath.Join(dir, "tmp"),
	}
	for _, d := range []string{filepath.Join(e.lower, "bin"), e.upper, e.work, e.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.lower, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := osexec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, name := range strings.Fields(string(list)) {
		if name == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(e.lower, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// spec runs sh -c script over the overlay, with a relative lowerdir.
func (e *testEnv) spec(script string) exec.Spec {
	return exec.Spec{
		SnapshotRoot: e.layers,
		Root: snapshot.Mount{Type: "overlay", Source: "overlay", Target: "/",
			Options: []string{"lowerdir=lower", "upperdir=" + e.upper, "workdir=" + e.work}},
		TempDir: e.tmp,
		Process: exec.Process{Args: []string{"sh", "-c", script}, Env: []string{"PATH=/bin"}},
	}
}

type result struct {
	code           int
	stdout, stderr string
	err            error
}

// run runs spec and checks that nothing is left on the host afterwards.
func (e *testEnv) run(t *testing.T, ctx context.Context, spec exec.Spec) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if spec.Process.Stdout == nil {
		spec.Process.Stdout = &stdout
	}
	if spec.Process.Stderr == nil {
		spec.Process.Stderr = &stderr
	}
	code, err := exec.Run(ctx, spec)
	e.checkClean(t)
	return result{code, stdout.String(), stderr.String(), err}
}

// checkClean fails if a mount under the test dir or a scratch dir remains.
func (e *testEnv) checkClean(t *testing.T) {
	t.Helper()
	checkNoMounts(t, e.dir)
	left, err := os.ReadDir(e.tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("scratch left in TempDir: %v", left)
	}
}

func checkNoMounts(t *testing.T, under string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), under) {
			t.Errorf("mount left on host: %s", sc.Text())
		}
	}
}

// upperEntries lists the upper dir's paths, relative and sorted.
func (e *testEnv) upperEntries(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(e.upper, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != e.upper {
			rel, _ := filepath.Rel(e.upper, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestChildNotMarked(t *testing.T) {
	if exec.Child(testHelpers()) {
		t.Fatal("Child claimed a normal test process")
	}
}
