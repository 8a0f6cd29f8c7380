package cgroups

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// These tests drive the cgroup2 code paths against the real cgroup2 mount.
// On a hybrid machine its controllers are all bound to v1 except, usually,
// hugetlb: that one stands in for memory/cpu/pids to exercise enabling
// controllers down the tree, the no-internal-processes rule, clone3 into a
// cgroup, cgroup.kill and cgroup.freeze.

// requireV2Controller returns the machine's layout and a cgroup2-only
// layout with hugetlb as its one controller. Enabling hugetlb in the
// cgroup2 root is undone when the test ends.
func requireV2Controller(t *testing.T) (machine, v2 Layout) {
	t.Helper()
	l := requireCgroups(t)
	if l.Unified == "" || !l.onV2("hugetlb") {
		t.Skip("needs a cgroup2 mount offering the hugetlb controller")
	}
	rootControl := filepath.Join(l.Unified, "cgroup.subtree_control")
	before, err := readFile(rootControl)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(before), "hugetlb") {
		t.Cleanup(func() {
			if err := writeFile(rootControl, "-hugetlb"); err != nil {
				t.Errorf("restore %s: %v", rootControl, err)
			}
		})
	}
	return l, Layout{Mode: V2, Unified: l.Unified, Controllers: map[string]string{"hugetlb": l.Unified}}
}

func hugetlbOnly() config {
	return config{controllers: []string{"hugetlb"}, numCPU: runtime.NumCPU()}
}

// inCgroup reports whether /proc/pid/cgroup has a line "ID:want", want
// being "controllers:path".
func inCgroup(t *testing.T, pid int, want string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		_, rest, _ := strings.Cut(strings.TrimSpace(line), ":")
		if rest == want {
			return true
		}
	}
	return false
}

func TestV2Group(t *testing.T) {
	_, v2 := requireV2Controller(t)
	ctx := context.Background()
	name := testName(t, v2)
	g, err := create(ctx, v2, name, Resources{}, hugetlbOnly())
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)

	leaf := filepath.Join(v2.Unified, name)
	if !slices.Equal(g.Paths(), []string{leaf}) || !maps.Equal(g.Controllers(), map[string]string{"hugetlb": leaf}) {
		t.Fatalf("group at %v with %v, want %s with hugetlb", g.Paths(), g.Controllers(), leaf)
	}
	for _, dir := range []string{v2.Unified, filepath.Dir(leaf)} {
		if s, _ := readFile(filepath.Join(dir, "cgroup.subtree_control")); !slices.Contains(strings.Fields(s), "hugetlb") {
			t.Errorf("%s/cgroup.subtree_control = %q, want hugetlb enabled", dir, s)
		}
	}
	if s, _ := readFile(filepath.Join(leaf, "cgroup.controllers")); s != "hugetlb" {
		t.Errorf("leaf cgroup.controllers = %q, want hugetlb", s)
	}

	// clone3 with CLONE_INTO_CGROUP: the helper starts inside the group.
	f, err := g.CgroupFD()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := helper(t, "spin")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	p := startInGroup(t, cmd, func(pid int) error {
		if !inCgroup(t, pid, ":/"+name) {
			t.Errorf("process %d did not start in cgroup2 /%s", pid, name)
		}
		return nil
	}, false)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("spin: %v %s", err, p.stderr)
	}
	// No cpuacct on v2: usage comes from the core cpu.stat.
	if st, err := g.Stats(); err != nil || st.CPUUsage <= 0 {
		t.Errorf("Stats = %+v, %v; want CPU usage", st, err)
	}

	loaded, err := load(v2, name, []string{"hugetlb"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded.Paths(), g.Paths()) || !maps.Equal(loaded.Controllers(), g.Controllers()) {
		t.Errorf("load found %v %v", loaded.Paths(), loaded.Controllers())
	}
	if _, err := g.OOMKilled(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("OOMKilled without memory controller: %v, want unsupported", err)
	}
	if err := g.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(leaf) {
		t.Errorf("%s left behind", leaf)
	}
}

func TestV2Kill(t *testing.T) {
	_, v2 := requireV2Controller(t)
	for _, m := range []struct {
		name string
		how  killMethod
		file string // interface file the method needs
	}{
		{"cgroup.kill", killCgroupKill, "cgroup.kill"},
		{"cgroup.freeze", killFreeze, "cgroup.freeze"},
		{"signal loop", killSignal, "cgroup.procs"},
	} {
		t.Run(m.name, func(t *testing.T) {
			ctx := context.Background()
			g, err := create(ctx, v2, testName(t, v2), Resources{}, hugetlbOnly())
			if err != nil {
				t.Fatal(err)
			}
			deleteAtEnd(t, g)
			if !exists(filepath.Join(g.v2dir, m.file)) {
				t.Skipf("kernel has no %s", m.file)
			}
			f, err := g.CgroupFD()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd := shell(`sleep 1000 >/dev/null 2>&1 & sleep 1000 >/dev/null 2>&1 &
				(while :; do /bin/true; done) >/dev/null 2>&1 &
				echo ready; wait`)
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
			p := startInGroup(t, cmd, nil, true)
			if pids, err := g.pids(); err != nil || len(pids) < 4 {
				t.Fatalf("group has %v, %v; want at least 4 processes", pids, err)
			}
			if err := g.kill(ctx, m.how); err != nil {
				t.Fatal(err)
			}
			if pids, err := g.pids(); err != nil || len(pids) != 0 {
				t.Fatalf("after kill: %v, %v", pids, err)
			}
			if m.how == killFreeze {
				if n, _, _ := readKeyed(filepath.Join(g.v2dir, "cgroup.events"), "frozen"); n != 0 {
					t.Error("group left frozen")
				}
			}
			p.cmd.Wait()
			if ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Errorf("shell ended with %v, want SIGKILL", p.cmd.ProcessState)
			}
			if err := g.Delete(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestV2NoInternalProcesses(t *testing.T) {
	_, v2 := requireV2Controller(t)
	ctx := context.Background()
	name := testName(t, v2)
	parent := filepath.Dir(filepath.Join(v2.Unified, name))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	// A process in the would-be parent forbids enabling controllers there.
	startInGroup(t, shell(`echo ready; exec sleep 1000 >/dev/null`), func(pid int) error {
		return writeFile(filepath.Join(parent, "cgroup.procs"), strconv.Itoa(pid))
	}, true)

	_, err := create(ctx, v2, name, Resources{}, hugetlbOnly())
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), filepath.Join(parent, "cgroup.subtree_control")) ||
		!strings.Contains(err.Error(), "processes of its own") {
		t.Fatalf("err = %v, want EBUSY on the parent's subtree_control with an explanation", err)
	}
	if exists(filepath.Join(v2.Unified, name)) {
		t.Error("leaf created despite the error")
	}
}

// TestHybridPerController makes one group whose controllers sit on both
// versions: the machine's v1 controllers and hugetlb on cgroup2.
func TestHybridPerController(t *testing.T) {
	l, _ := requireV2Controller(t)
	if l.Mode != V1 {
		t.Skip("not a hybrid machine")
	}
	ctx := context.Background()
	name := testName(t, l)
	cfg := config{controllers: append(groupControllers(), "hugetlb"), numCPU: runtime.NumCPU()}
	g, err := create(ctx, l, name, Resources{MemoryBytes: 64 << 20, PidsLimit: 10}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)
	ctl := g.Controllers()
	for _, c := range []string{"memory", "pids", "hugetlb"} {
		if want := filepath.Join(l.Controllers[c], name); ctl[c] != want {
			t.Errorf("%s at %q, want %q", c, ctl[c], want)
		}
	}
	if s, _ := readFile(filepath.Join(l.Unified, name, "cgroup.controllers")); s != "hugetlb" {
		t.Errorf("v2 leaf cgroup.controllers = %q, want hugetlb", s)
	}

	p := startInGroup(t, shell(`echo ready; exec sleep 1000 >/dev/null`), g.Add, true)
	for _, want := range []string{":/" + name, "memory:/" + name, "pids:/" + name} {
		if !inCgroup(t, p.cmd.Process.Pid, want) {
			t.Errorf("process not in %s", want)
		}
	}
	if st, err := g.Stats(); err != nil || st.PidsCurrent != 1 || st.MemoryLimit != 64<<20 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Paths() {
		if exists(d) {
			t.Errorf("%s left behind", d)
		}
	}
}
