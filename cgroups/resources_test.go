package cgroups

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestResourcesCheck(t *testing.T) {
	const mb = 1 << 20
	tests := []struct {
		name string
		r    Resources
		want limits
		err  string
	}{
		{name: "none", r: Resources{}, want: limits{}},
		{name: "memory means no swap", r: Resources{MemoryBytes: 32 * mb}, want: limits{memory: 32 * mb, memsw: 32 * mb}},
		{name: "minimum memory", r: Resources{MemoryBytes: MinMemory}, want: limits{memory: MinMemory, memsw: MinMemory}},
		{name: "below minimum", r: Resources{MemoryBytes: MinMemory - 1}, err: "minimum memory limit allowed is 6MB"},
		{name: "negative memory", r: Resources{MemoryBytes: -1}, err: "must not be negative"},
		{name: "swap", r: Resources{MemoryBytes: 32 * mb, MemorySwapBytes: 64 * mb}, want: limits{memory: 32 * mb, memsw: 64 * mb}},
		{name: "swap equal", r: Resources{MemoryBytes: 32 * mb, MemorySwapBytes: 32 * mb}, want: limits{memory: 32 * mb, memsw: 32 * mb}},
		{name: "unlimited swap", r: Resources{MemoryBytes: 32 * mb, MemorySwapBytes: -1}, want: limits{memory: 32 * mb, memsw: -1}},
		{name: "swap below memory", r: Resources{MemoryBytes: 32 * mb, MemorySwapBytes: 16 * mb}, err: "at least the memory limit"},
		{name: "swap without memory", r: Resources{MemorySwapBytes: 64 * mb}, err: "needs a memory limit"},
		{name: "swap -2", r: Resources{MemoryBytes: 32 * mb, MemorySwapBytes: -2}, err: "use -1"},
		{name: "half a cpu", r: Resources{CPUs: 0.5}, want: limits{quota: 50000}},
		{name: "all cpus", r: Resources{CPUs: 2}, want: limits{quota: 200000}},
		{name: "smallest cpus", r: Resources{CPUs: 0.01}, want: limits{quota: 1000}},
		{name: "rounded cpus", r: Resources{CPUs: 1.234567}, want: limits{quota: 123457}},
		{name: "too few cpus", r: Resources{CPUs: 0.009}, err: "range of CPUs is from 0.01 to 2.00"},
		{name: "too many cpus", r: Resources{CPUs: 2.5}, err: "only 2 CPUs available"},
		{name: "negative cpus", r: Resources{CPUs: -1}, err: "range of CPUs"},
		{name: "pids", r: Resources{PidsLimit: 5}, want: limits{pids: 5}},
		{name: "pids -1 unlimited", r: Resources{PidsLimit: -1}, want: limits{}},
		{name: "pids -2", r: Resources{PidsLimit: -2}, err: "invalid pids limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.check(2)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("check = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSettings(t *testing.T) {
	mem := limits{memory: 33554432, memsw: 33554432}
	tests := []struct {
		name       string
		lim        limits
		controller string
		v2         bool
		want       []setting
	}{
		{"v1 memory no swap", mem, "memory", false, []setting{
			{file: "memory.limit_in_bytes", value: "33554432"},
			{file: "memory.memsw.limit_in_bytes", value: "33554432", swap: true},
		}},
		{"v2 memory no swap", mem, "memory", true, []setting{
			{file: "memory.max", value: "33554432"},
			{file: "memory.swap.max", value: "0", swap: true},
		}},
		{"v1 memory with swap", limits{memory: 100, memsw: 300}, "memory", false, []setting{
			{file: "memory.limit_in_bytes", value: "100"},
			{file: "memory.memsw.limit_in_bytes", value: "300", swap: true},
		}},
		{"v2 memory with swap", limits{memory: 100, memsw: 300}, "memory", true, []setting{
			{file: "memory.max", value: "100"},
			{file: "memory.swap.max", value: "200", swap: true},
		}},
		{"v1 unlimited swap", limits{memory: 100, memsw: -1}, "memory", false, []setting{
			{file: "memory.limit_in_bytes", value: "100"},
			{file: "memory.memsw.limit_in_bytes", value: "-1", swap: true},
		}},
		{"v2 unlimited swap", limits{memory: 100, memsw: -1}, "memory", true, []setting{
			{file: "memory.max", value: "100"},
			{file: "memory.swap.max", value: "max", swap: true},
		}},
		{"v1 cpu", limits{quota: 50000}, "cpu", false, []setting{
			{file: "cpu.cfs_period_us", value: "100000"},
			{file: "cpu.cfs_quota_us", value: "50000"},
		}},
		{"v2 cpu", limits{quota: 150000}, "cpu", true, []setting{
			{file: "cpu.max", value: "150000 100000"},
		}},
		{"v1 pids", limits{pids: 5}, "pids", false, []setting{{file: "pids.max", value: "5"}}},
		{"v2 pids", limits{pids: 5}, "pids", true, []setting{{file: "pids.max", value: "5"}}},
		{"no memory limit", limits{pids: 5}, "memory", true, nil},
		{"no cpu limit", mem, "cpu", false, nil},
		{"no pids limit", mem, "pids", false, nil},
		{"controller without limits", mem, "freezer", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.lim.settings(tt.controller, tt.v2); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("settings = %+v\nwant       %+v", got, tt.want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	for _, name := range []string{"strata/abc", "x", "strata/a/b"} {
		if err := checkName(name); err != nil {
			t.Errorf("checkName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "/strata/x", "../x", "strata/../../x", "strata//x", "strata/x/", "a\nb"} {
		if err := checkName(name); err == nil {
			t.Errorf("checkName(%q) accepted", name)
		}
	}
}

// Checks that need no cgroup file system: they fail before touching one,
// or touch a plain directory standing in for a cgroup2 mount.
func TestCreateErrors(t *testing.T) {
	ctx := context.Background()
	cfg := config{controllers: groupControllers(), numCPU: 2}

	t.Run("limit without its controller", func(t *testing.T) {
		l := Layout{Mode: V1, Controllers: map[string]string{"memory": t.TempDir()}}
		_, err := create(ctx, l, "strata/x", Resources{PidsLimit: 5}, cfg)
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "pids controller") {
			t.Fatalf("err = %v, want unsupported pids controller", err)
		}
	})

	t.Run("bad name", func(t *testing.T) {
		l := Layout{Mode: V1, Controllers: map[string]string{"memory": t.TempDir()}}
		if _, err := create(ctx, l, "../x", Resources{}, cfg); err == nil || !strings.Contains(err.Error(), "invalid group name") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		l := Layout{Mode: V1, Controllers: map[string]string{"memory": t.TempDir()}}
		if _, err := create(cctx, l, "strata/x", Resources{}, cfg); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("error names file and value, leaves nothing", func(t *testing.T) {
		// A directory that is not cgroupfs has no interface files, so the
		// first limit write fails; New must say which and undo its mkdir.
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		l := Layout{Mode: V2, Unified: root, Controllers: map[string]string{"memory": root}}
		_, err := create(ctx, l, "x", Resources{MemoryBytes: 32 << 20}, cfg)
		want := `write "33554432" to ` + filepath.Join(root, "x", "memory.max")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want it to contain %q", err, want)
		}
		if exists(filepath.Join(root, "x")) {
			t.Error("group directory left behind")
		}
		got, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
		if string(got) != "+memory" {
			t.Errorf("subtree_control = %q, want +memory", got)
		}
	})

	t.Run("load missing", func(t *testing.T) {
		l := Layout{Mode: V1, Controllers: map[string]string{"memory": t.TempDir()}}
		if _, err := load(l, "strata/none", groupControllers()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want not exist", err)
		}
	})
}

func TestNoSwapAccounting(t *testing.T) {
	tests := []struct {
		name       string
		lim        limits
		v2         bool
		swappiness string // content afterwards; "" = untouched
		warning    string // "" = no warning
	}{
		{"v1 no swap wanted", limits{memory: 100, memsw: 100}, false, "0", "swap is not limited; memory.swappiness set to 0"},
		{"v1 some swap wanted", limits{memory: 100, memsw: 200}, false, "", "swap is not limited"},
		{"v1 unlimited swap", limits{memory: 100, memsw: -1}, false, "", ""},
		{"v2 no swap wanted", limits{memory: 100, memsw: 100}, true, "", "swap is not limited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			swappiness := filepath.Join(dir, "memory.swappiness")
			if err := os.WriteFile(swappiness, []byte("60"), 0o644); err != nil {
				t.Fatal(err)
			}
			g := &Group{}
			if tt.v2 {
				g.v2dir = dir
			}
			g.noSwapAccounting(dir, filepath.Join(dir, "memory.memsw.limit_in_bytes"), tt.lim)
			got, _ := os.ReadFile(swappiness)
			want := tt.swappiness
			if want == "" {
				want = "60"
			}
			if string(got) != want {
				t.Errorf("memory.swappiness = %q, want %q", got, want)
			}
			w := g.Warnings()
			switch {
			case tt.warning == "" && len(w) != 0:
				t.Errorf("warnings %q, want none", w)
			case tt.warning != "" && (len(w) != 1 || !strings.Contains(w[0], tt.warning) || !strings.Contains(w[0], "memsw")):
				t.Errorf("warnings %q, want one naming the missing file and saying %q", w, tt.warning)
			}
		})
	}
}
