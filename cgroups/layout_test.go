package cgroups

import (
	"errors"
	"io/fs"
	"maps"
	"strings"
	"testing"
)

// Mountinfo excerpts of the layouts strata meets.
const (
	// This build machine: v1 controllers, cpu and cpuacct mounted apart,
	// and a cgroup2 mount that only has hugetlb.
	hybridMountinfo = `22 1 8:1 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	// Older distributions: no cgroup2, cpu and cpuacct co-mounted.
	legacyMountinfo = `25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid shared:13 - cgroup cgroup rw,pids
`
	unifiedMountinfo = `30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	// A container given a bind of its own memory cgroup before the real
	// root: the root mount is preferred.
	bindMountinfo = `40 30 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
41 30 0:32 / /host\040cgroup/memory rw - cgroup cgroup rw,memory
`
)

func TestBuildLayout(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		v2ctl     string // cgroup.controllers of the cgroup2 mount
		mode      Mode
		hybrid    bool
		unified   string
		ctl       map[string]string
		err       string
	}{
		{
			name: "hybrid", mountinfo: hybridMountinfo, v2ctl: "hugetlb\n",
			mode: V1, hybrid: true, unified: "/sys/fs/cgroup/unified",
			ctl: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct",
				"memory": "/sys/fs/cgroup/memory", "freezer": "/sys/fs/cgroup/freezer",
				"pids": "/sys/fs/cgroup/pids", "hugetlb": "/sys/fs/cgroup/unified",
			},
		},
		{
			name: "hybrid with a v2-only controller", mountinfo: hybridMountinfo, v2ctl: "pids hugetlb",
			mode: V1, hybrid: true, unified: "/sys/fs/cgroup/unified",
			ctl: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct",
				"memory": "/sys/fs/cgroup/memory", "freezer": "/sys/fs/cgroup/freezer",
				// A v1 mount wins over a (stale) v2 listing.
				"pids":    "/sys/fs/cgroup/pids",
				"hugetlb": "/sys/fs/cgroup/unified",
			},
		},
		{
			name: "legacy co-mounted", mountinfo: legacyMountinfo,
			mode: V1,
			ctl: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
				"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
			},
		},
		{
			name: "unified", mountinfo: unifiedMountinfo, v2ctl: "cpuset cpu io memory hugetlb pids rdma misc\n",
			mode: V2, unified: "/sys/fs/cgroup",
			ctl: map[string]string{
				"cpuset": "/sys/fs/cgroup", "cpu": "/sys/fs/cgroup", "io": "/sys/fs/cgroup",
				"memory": "/sys/fs/cgroup", "hugetlb": "/sys/fs/cgroup", "pids": "/sys/fs/cgroup",
				"rdma": "/sys/fs/cgroup", "misc": "/sys/fs/cgroup",
			},
		},
		{
			// systemd in a container on a v2 host may add a named v1
			// hierarchy: it carries no controller, so the machine is V2.
			name: "unified plus named v1", v2ctl: "memory pids",
			mountinfo: unifiedMountinfo + "50 30 0:40 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n",
			mode:      V2, unified: "/sys/fs/cgroup",
			ctl: map[string]string{"memory": "/sys/fs/cgroup", "pids": "/sys/fs/cgroup"},
		},
		{
			name: "unified with no controllers delegated", mountinfo: unifiedMountinfo, v2ctl: "",
			mode: V2, unified: "/sys/fs/cgroup", ctl: map[string]string{},
		},
		{
			name: "bind mounts prefer the hierarchy root", mountinfo: bindMountinfo,
			mode: V1, ctl: map[string]string{"memory": "/host cgroup/memory"},
		},
		{
			name: "no cgroups", mountinfo: "22 1 8:1 / / rw - ext4 /dev/vda rw\n",
			err: "no cgroup",
		},
		{
			name: "only a named v1 hierarchy", mountinfo: "26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n",
			err: "no cgroup",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mounts, err := parseMountinfo(strings.NewReader(tt.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			l, err := buildLayout(mounts, func(dir string) ([]byte, error) {
				if dir != tt.unified {
					t.Errorf("read controllers of %q, want %q", dir, tt.unified)
				}
				return []byte(tt.v2ctl), nil
			})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Mode != tt.mode || l.Hybrid != tt.hybrid || l.Unified != tt.unified {
				t.Errorf("got mode %v hybrid %v unified %q, want %v %v %q", l.Mode, l.Hybrid, l.Unified, tt.mode, tt.hybrid, tt.unified)
			}
			if !maps.Equal(l.Controllers, tt.ctl) {
				t.Errorf("controllers = %v\nwant          %v", l.Controllers, tt.ctl)
			}
		})
	}
}

func TestBuildLayoutUnreadableControllers(t *testing.T) {
	mounts, err := parseMountinfo(strings.NewReader(unifiedMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	_, err = buildLayout(mounts, func(string) ([]byte, error) { return nil, fs.ErrPermission })
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("err = %v, want a permission error", err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	tests := map[string]string{
		`/plain`:             "/plain",
		`/a\040b`:            "/a b",
		`/tab\011x\134y`:     "/tab\tx\\y",
		`/short\04`:          `/short\04`,
		`/not\999octal`:      `/not\999octal`,
		`/end\040`:           "/end ",
		`/two\040\040spaces`: "/two  spaces",
	}
	for in, want := range tests {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLayoutString(t *testing.T) {
	l := Layout{Mode: V1, Hybrid: true, Unified: "/u", Controllers: map[string]string{"pids": "/p", "memory": "/m"}}
	if got, want := l.String(), "v1 (hybrid) cgroup2=/u memory=/m pids=/p"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
