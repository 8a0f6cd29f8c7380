package cgroups

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stats is a snapshot of a group's usage, for `strata stats`. Fields of a
// controller the group lacks stay zero.
type Stats struct {
	// MemoryUsage is what the group is charged now, page cache included
	// (v1 memory.usage_in_bytes, v2 memory.current).
	MemoryUsage int64
	// MemoryInactiveFile is reclaimable page cache; Docker shows
	// MemoryUsage minus this as a container's memory use.
	MemoryInactiveFile int64
	// MemoryPeak is the high-water mark (v1 memory.max_usage_in_bytes, v2
	// memory.peak where the kernel has it, else 0).
	MemoryPeak int64
	// MemoryLimit is the memory limit, -1 when unlimited.
	MemoryLimit int64
	// CPUUsage is the CPU time every process that was ever in the group has
	// used (v1 cpuacct.usage, v2 cpu.stat usage_usec).
	CPUUsage time.Duration
	// PidsCurrent is the number of tasks (threads included) in the group.
	PidsCurrent int64
	// PidsLimit is the task limit, -1 when unlimited.
	PidsLimit int64
}

// Stats reads the group's current usage.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	var err error
	if dir, ok := g.ctl["memory"]; ok {
		v2 := dir == g.v2dir
		usage, peak, limit, inactive := "memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file"
		if v2 {
			usage, peak, limit, inactive = "memory.current", "memory.peak", "memory.max", "inactive_file"
		}
		if s.MemoryUsage, err = readInt(filepath.Join(dir, usage)); err != nil {
			return s, err
		}
		if s.MemoryLimit, err = readInt(filepath.Join(dir, limit)); err != nil {
			return s, err
		}
		if p := filepath.Join(dir, peak); exists(p) {
			if s.MemoryPeak, err = readInt(p); err != nil {
				return s, err
			}
		}
		if s.MemoryInactiveFile, _, err = readKeyed(filepath.Join(dir, "memory.stat"), inactive); err != nil {
			return s, err
		}
	}
	switch {
	case g.ctl["cpuacct"] != "":
		ns, err := readInt(filepath.Join(g.ctl["cpuacct"], "cpuacct.usage"))
		if err != nil {
			return s, err
		}
		s.CPUUsage = time.Duration(ns)
	case g.v2dir != "":
		// cpu.stat's usage_usec is cgroup core: there even without the
		// cpu controller.
		file := filepath.Join(g.v2dir, "cpu.stat")
		us, found, err := readKeyed(file, "usage_usec")
		if err != nil {
			return s, err
		}
		if !found {
			return s, fmt.Errorf("cgroups: %s has no usage_usec", file)
		}
		s.CPUUsage = time.Duration(us) * time.Microsecond
	}
	if dir, ok := g.ctl["pids"]; ok {
		if s.PidsCurrent, err = readInt(filepath.Join(dir, "pids.current")); err != nil {
			return s, err
		}
		if s.PidsLimit, err = readInt(filepath.Join(dir, "pids.max")); err != nil {
			return s, err
		}
	}
	return s, nil
}

// OOMKilled reports whether the kernel's OOM killer has killed a process
// in the group because of its memory limit (the oom_kill counter of v1
// memory.oom_control, Linux 4.13+, or of v2 memory.events). A group without
// the memory controller, or a kernel without the counter, gives an error
// wrapping errors.ErrUnsupported.
func (g *Group) OOMKilled() (bool, error) {
	dir, ok := g.ctl["memory"]
	if !ok {
		return false, fmt.Errorf("cgroups: group %s has no memory controller: %w", g.name, errors.ErrUnsupported)
	}
	file := filepath.Join(dir, "memory.oom_control")
	if dir == g.v2dir {
		file = filepath.Join(dir, "memory.events")
	}
	n, found, err := readKeyed(file, "oom_kill")
	if err != nil {
		return false, err
	}
	if !found {
		return false, fmt.Errorf("cgroups: %s has no oom_kill counter (kernel older than 4.13): %w", file, errors.ErrUnsupported)
	}
	return n > 0, nil
}

// Resources reads back the limits in force, in New's conventions: 0 for
// no limit, MemorySwapBytes -1 for unlimited swap and 0 when the kernel
// does not account swap.
func (g *Group) Resources() (Resources, error) {
	var r Resources
	if dir, ok := g.ctl["memory"]; ok {
		if err := g.readMemory(dir, &r); err != nil {
			return r, err
		}
	}
	if dir, ok := g.ctl["cpu"]; ok {
		var quota, period int64
		if dir == g.v2dir {
			file := filepath.Join(dir, "cpu.max")
			s, err := readFile(file)
			if err != nil {
				return r, err
			}
			q, p, _ := strings.Cut(s, " ")
			if q == "max" {
				q = "-1"
			}
			var err1, err2 error
			quota, err1 = strconv.ParseInt(q, 10, 64)
			period, err2 = strconv.ParseInt(p, 10, 64)
			if err1 != nil || err2 != nil {
				return r, fmt.Errorf("cgroups: read %s: unexpected content %q", file, s)
			}
		} else {
			var err error
			if quota, err = readInt(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
				return r, err
			}
			if period, err = readInt(filepath.Join(dir, "cpu.cfs_period_us")); err != nil {
				return r, err
			}
		}
		if quota > 0 && period > 0 {
			r.CPUs = float64(quota) / float64(period)
		}
	}
	if dir, ok := g.ctl["pids"]; ok {
		n, err := readInt(filepath.Join(dir, "pids.max"))
		if err != nil {
			return r, err
		}
		r.PidsLimit = max(n, 0)
	}
	return r, nil
}

func (g *Group) readMemory(dir string, r *Resources) error {
	v2 := dir == g.v2dir
	limit, swap := "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
	if v2 {
		limit, swap = "memory.max", "memory.swap.max"
	}
	mem, err := readInt(filepath.Join(dir, limit))
	if err != nil || mem == -1 {
		return err
	}
	r.MemoryBytes = mem
	swapFile := filepath.Join(dir, swap)
	if !exists(swapFile) {
		return nil
	}
	n, err := readInt(swapFile)
	switch {
	case err != nil:
		return err
	case n == -1:
		r.MemorySwapBytes = -1
	case v2:
		r.MemorySwapBytes = mem + n // v2 limits swap alone
	default:
		r.MemorySwapBytes = n
	}
	return nil
}
