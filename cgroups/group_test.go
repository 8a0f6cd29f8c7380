package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDetect(t *testing.T) {
	l := requireCgroups(t)
	mode, err := Detect()
	if err != nil {
		t.Fatal(err)
	}
	if mode != l.Mode {
		t.Errorf("Detect = %v, layout says %v", mode, l.Mode)
	}
	// The statfs of /sys/fs/cgroup tells independently which layout this is.
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil {
		want := V1
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			want = V2
		}
		if mode != want {
			t.Errorf("Detect = %v, but /sys/fs/cgroup says %v", mode, want)
		}
	}
	t.Logf("layout: %s", l)
}

func TestOOMKilled(t *testing.T) {
	l := requireCgroups(t)
	ctx := context.Background()
	g, err := New(ctx, testName(t, l), Resources{MemoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)
	if oom, err := g.OOMKilled(); err != nil || oom {
		t.Fatalf("new group: OOMKilled = %v, %v; want false", oom, err)
	}

	p := startInGroup(t, helper(t, "hog"), g.Add, false)
	p.cmd.Wait()
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("hog ended with %v, want SIGKILL; stdout %q stderr %q", p.cmd.ProcessState, p.stdout, p.stderr)
	}
	if code := 128 + int(ws.Signal()); code != ExitCodeOOM {
		t.Errorf("exit code %d, want %d", code, ExitCodeOOM)
	}
	oom, err := g.OOMKilled()
	if err != nil || !oom {
		t.Fatalf("OOMKilled = %v, %v; want true", oom, err)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel may overshoot the limit by a page or a charge batch
	// before reclaim and the OOM killer act.
	if st.MemoryLimit != 32<<20 || st.MemoryPeak < 16<<20 || st.MemoryPeak > 33<<20 {
		t.Errorf("stats %+v: want limit 32 MiB and a peak close to it", st)
	}
}

func TestPidsLimit(t *testing.T) {
	l := requireCgroups(t)
	ctx := context.Background()
	g, err := New(ctx, testName(t, l), Resources{PidsLimit: 5})
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)

	// sh plus four sleeps fill the limit; the fifth fork must fail.
	p := startInGroup(t, shell(`i=0; while [ $i -lt 10 ]; do sleep 1000 >/dev/null 2>&1 & i=$((i+1)); done; echo all forked`), g.Add, false)
	p.cmd.Wait()
	if !strings.Contains(strings.ToLower(p.stderr.String()), "fork") || strings.Contains(p.stdout.String(), "all forked") {
		t.Fatalf("forks did not fail: exit %v, stdout %q, stderr %q", p.cmd.ProcessState, p.stdout, p.stderr)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PidsLimit != 5 || st.PidsCurrent < 1 || st.PidsCurrent > 5 {
		t.Errorf("stats %+v: want pids limit 5 and 1..5 current", st)
	}
	hits, found, err := readKeyed(filepath.Join(g.Controllers()["pids"], "pids.events"), "max")
	if err != nil || !found || hits == 0 {
		t.Errorf("pids.events max = %d, %v, %v; want > 0", hits, found, err)
	}
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	// Zombies still count in pids.current until their parent reaps them.
	reapOrphans()
	if st, err := g.Stats(); err != nil || st.PidsCurrent != 0 {
		t.Errorf("after Kill: pids %d, %v", st.PidsCurrent, err)
	}
}

func TestCPUQuota(t *testing.T) {
	l := requireCgroups(t)
	if runtime.NumCPU() < 1 {
		t.Skip("no CPU count")
	}
	ctx := context.Background()
	g, err := New(ctx, testName(t, l), Resources{CPUs: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)

	dir := g.Controllers()["cpu"]
	if l.onV2("cpu") {
		if got, _ := readFile(filepath.Join(dir, "cpu.max")); got != "50000 100000" {
			t.Errorf("cpu.max = %q", got)
		}
	} else {
		quota, _ := readFile(filepath.Join(dir, "cpu.cfs_quota_us"))
		period, _ := readFile(filepath.Join(dir, "cpu.cfs_period_us"))
		if quota != "50000" || period != "100000" {
			t.Errorf("cfs quota %q period %q, want 50000 100000", quota, period)
		}
	}
	if r, err := g.Resources(); err != nil || r.CPUs != 0.5 {
		t.Errorf("Resources = %+v, %v; want CPUs 0.5", r, err)
	}
	if st, err := g.Stats(); err != nil || st.CPUUsage != 0 {
		t.Errorf("new group: CPU usage %v, %v; want 0", st.CPUUsage, err)
	}

	p := startInGroup(t, helper(t, "spin"), g.Add, false)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("spin: %v; %s", err, p.stderr)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUsage <= 0 {
		t.Errorf("CPU usage %v after busy work, want > 0", st.CPUUsage)
	}
	if !l.onV2("cpu") {
		n, _, _ := readKeyed(filepath.Join(dir, "cpu.stat"), "nr_throttled")
		t.Logf("CPU usage %v, throttled %d times", st.CPUUsage, n)
	}
}

func TestResourcesRoundTrip(t *testing.T) {
	l := requireCgroups(t)
	const mb = 1 << 20
	tests := []struct {
		name string
		in   Resources
		want Resources
	}{
		{"none", Resources{}, Resources{}},
		{"memory, no swap", Resources{MemoryBytes: 64 * mb}, Resources{MemoryBytes: 64 * mb, MemorySwapBytes: 64 * mb}},
		{"memory and swap", Resources{MemoryBytes: 64 * mb, MemorySwapBytes: 128 * mb}, Resources{MemoryBytes: 64 * mb, MemorySwapBytes: 128 * mb}},
		{"unlimited swap", Resources{MemoryBytes: 64 * mb, MemorySwapBytes: -1}, Resources{MemoryBytes: 64 * mb, MemorySwapBytes: -1}},
		{"cpus", Resources{CPUs: 1.5}, Resources{CPUs: 1.5}},
		{"pids", Resources{PidsLimit: 100}, Resources{PidsLimit: 100}},
		{"all", Resources{MemoryBytes: 6 * mb, CPUs: 0.25, PidsLimit: 7}, Resources{MemoryBytes: 6 * mb, MemorySwapBytes: 6 * mb, CPUs: 0.25, PidsLimit: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in.CPUs > float64(runtime.NumCPU()) {
				t.Skip("not enough CPUs")
			}
			ctx := context.Background()
			g, err := New(ctx, testName(t, l), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			deleteAtEnd(t, g)
			if w := g.Warnings(); len(w) > 0 {
				// Without swap accounting the swap limit reads back as 0.
				t.Logf("warnings: %q", w)
				tt.want.MemorySwapBytes = 0
			}
			got, err := g.Resources()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Resources = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	l := requireCgroups(t)
	ctx := context.Background()
	name := testName(t, l)
	r := Resources{MemoryBytes: 64 << 20, PidsLimit: 20}
	g, err := New(ctx, name, r)
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)
	p := startInGroup(t, shell(`echo ready; exec sleep 1000 >/dev/null`), g.Add, true)

	loaded, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded.Paths(), g.Paths()) || !reflect.DeepEqual(loaded.Controllers(), g.Controllers()) {
		t.Errorf("Load found %v %v, New made %v %v", loaded.Paths(), loaded.Controllers(), g.Paths(), g.Controllers())
	}
	if got, err := loaded.Resources(); err != nil || got.MemoryBytes != r.MemoryBytes || got.PidsLimit != r.PidsLimit {
		t.Errorf("loaded Resources = %+v, %v", got, err)
	}
	if st, err := loaded.Stats(); err != nil || st.PidsCurrent != 1 || st.MemoryUsage <= 0 {
		t.Errorf("loaded Stats = %+v, %v; want one pid and some memory", st, err)
	}

	// The loaded group acts on the running process: kill and delete.
	if err := loaded.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	if ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("process ended with %v, want SIGKILL", p.cmd.ProcessState)
	}
	if err := loaded.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Paths() {
		if exists(d) {
			t.Errorf("%s left behind", d)
		}
	}
	if _, err := Load(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load after Delete: %v, want not exist", err)
	}
}

func TestNewExisting(t *testing.T) {
	l := requireCgroups(t)
	ctx := context.Background()
	name := testName(t, l)
	g, err := New(ctx, name, Resources{})
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)
	if _, err := New(ctx, name, Resources{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second New: %v, want exists", err)
	}
	for _, d := range g.Paths() {
		if !exists(d) {
			t.Errorf("failed New removed the first group's %s", d)
		}
	}
}

func TestKill(t *testing.T) {
	l := requireCgroups(t)
	methods := []struct {
		name string
		how  killMethod
	}{
		{"auto", killAuto},
		{"cgroup.kill", killCgroupKill},
		{"freeze", killFreeze},
		{"signal loop", killSignal},
	}
	for _, m := range methods {
		t.Run(m.name, func(t *testing.T) {
			ctx := context.Background()
			g, err := New(ctx, testName(t, l), Resources{PidsLimit: 100})
			if err != nil {
				t.Fatal(err)
			}
			deleteAtEnd(t, g)
			if m.how == killCgroupKill && (g.v2dir == "" || !exists(filepath.Join(g.v2dir, "cgroup.kill"))) {
				t.Skip("no cgroup.kill")
			}
			if m.how == killFreeze && !g.canFreeze() {
				t.Skip("no freezer")
			}
			// Sleepers plus a loop that keeps forking while we kill.
			p := startInGroup(t, shell(`sleep 1000 >/dev/null 2>&1 & sleep 1000 >/dev/null 2>&1 &
				(while :; do /bin/true; done) >/dev/null 2>&1 &
				echo ready; wait`), g.Add, true)
			if pids, err := g.pids(); err != nil || len(pids) < 4 {
				t.Fatalf("group has %v, %v; want at least 4 processes", pids, err)
			}
			if err := g.kill(ctx, m.how); err != nil {
				t.Fatal(err)
			}
			if pids, err := g.pids(); err != nil || len(pids) != 0 {
				t.Fatalf("after kill: %v, %v", pids, err)
			}
			p.cmd.Wait()
			if ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Errorf("shell ended with %v, want SIGKILL", p.cmd.ProcessState)
			}
			if err := g.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			for _, d := range g.Paths() {
				if exists(d) {
					t.Errorf("%s left behind", d)
				}
			}
		})
	}
}

func TestKillEmpty(t *testing.T) {
	l := requireCgroups(t)
	ctx := context.Background()
	g, err := New(ctx, testName(t, l), Resources{})
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)
	if err := g.Kill(ctx); err != nil {
		t.Fatalf("Kill of an empty group: %v", err)
	}
}

func TestDeleteBusy(t *testing.T) {
	l := requireCgroups(t)
	ctx := context.Background()
	g, err := New(ctx, testName(t, l), Resources{})
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)
	p := startInGroup(t, shell(`echo ready; exec sleep 1000 >/dev/null`), g.Add, true)

	// A cancelled context stops the EBUSY retries at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = g.Delete(cctx)
	if !errors.Is(err, unix.EBUSY) && !errors.Is(err, context.Canceled) {
		t.Fatalf("Delete of a busy group: %v", err)
	}
	if want := fmt.Sprintf("processes still in it: [%d]", p.cmd.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	for _, d := range g.Paths() {
		if !exists(d) {
			t.Errorf("busy %s was removed", d)
		}
	}
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(ctx); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestCgroupFDNeedsV2(t *testing.T) {
	l := requireCgroups(t)
	if l.Mode == V2 {
		t.Skip("every group is wholly on v2 here")
	}
	g, err := New(context.Background(), testName(t, l), Resources{})
	if err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, g)
	if f, err := g.CgroupFD(); !errors.Is(err, errors.ErrUnsupported) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("CgroupFD on %s: %v, want unsupported", l, err)
	}
}
