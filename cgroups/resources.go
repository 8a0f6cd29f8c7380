package cgroups

import (
	"fmt"
	"math"
	"strconv"
)

const (
	// MinMemory is the smallest memory limit accepted; Docker rejects less
	// ("Minimum memory limit allowed is 6MB") because a container cannot
	// even start below it.
	MinMemory = 6 << 20
	// CPUPeriod is the CFS period in microseconds: --cpus N gives the group
	// N*CPUPeriod microseconds of CPU time per period, as Docker does.
	CPUPeriod = 100000
	// ExitCodeOOM is the exit code Docker reports for a container whose
	// process the kernel's OOM killer ended: 128 + SIGKILL.
	ExitCodeOOM = 137
)

// minQuota is the kernel's smallest CFS quota (1ms), hence --cpus >= 0.01.
const minQuota = 1000

// Resources are the limits of one container. Zero values mean no limit.
type Resources struct {
	// MemoryBytes limits memory (RAM, page cache included); 0 = unlimited,
	// otherwise at least MinMemory.
	MemoryBytes int64
	// MemorySwapBytes limits memory plus swap, like docker --memory-swap:
	// -1 = unlimited swap; 0 = same as MemoryBytes, i.e. no swap at all
	// (Docker's default is twice MemoryBytes; strata chooses no swap so a
	// memory limit means what it says); otherwise >= MemoryBytes. Needs
	// MemoryBytes.
	MemorySwapBytes int64
	// CPUs is how many CPUs' worth of time the group may use per period
	// (0.5 = half of one CPU); 0 = unlimited, otherwise 0.01..NumCPU.
	CPUs float64
	// PidsLimit caps the number of tasks (processes and threads); 0 or -1
	// = unlimited.
	PidsLimit int64
}

// limits are validated Resources in the units cgroup files take.
type limits struct {
	memory int64 // bytes; 0 = none
	memsw  int64 // memory+swap bytes; -1 = unlimited; 0 when memory is 0
	quota  int64 // CFS quota in µs per CPUPeriod; 0 = none
	pids   int64 // 0 = none
}

// check validates r on a machine with numCPU CPUs.
func (r Resources) check(numCPU int) (limits, error) {
	var l limits
	switch {
	case r.MemoryBytes < 0:
		return l, fmt.Errorf("cgroups: invalid memory limit %d bytes: must not be negative", r.MemoryBytes)
	case r.MemoryBytes > 0 && r.MemoryBytes < MinMemory:
		return l, fmt.Errorf("cgroups: memory limit %d bytes is too small: minimum memory limit allowed is 6MB", r.MemoryBytes)
	}
	l.memory = r.MemoryBytes
	switch {
	case r.MemorySwapBytes == 0:
		l.memsw = r.MemoryBytes
	case r.MemoryBytes == 0:
		return l, fmt.Errorf("cgroups: memory+swap limit %d needs a memory limit as well", r.MemorySwapBytes)
	case r.MemorySwapBytes == -1:
		l.memsw = -1
	case r.MemorySwapBytes < -1:
		return l, fmt.Errorf("cgroups: invalid memory+swap limit %d: use -1 for unlimited swap", r.MemorySwapBytes)
	case r.MemorySwapBytes < r.MemoryBytes:
		return l, fmt.Errorf("cgroups: memory+swap limit %d must be at least the memory limit %d", r.MemorySwapBytes, r.MemoryBytes)
	default:
		l.memsw = r.MemorySwapBytes
	}
	if r.CPUs != 0 {
		quota := math.Round(r.CPUs * CPUPeriod)
		if math.IsNaN(r.CPUs) || quota < minQuota || r.CPUs > float64(numCPU) {
			return l, fmt.Errorf("cgroups: invalid --cpus %v: range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", r.CPUs, numCPU, numCPU)
		}
		l.quota = int64(quota)
	}
	switch {
	case r.PidsLimit < -1:
		return l, fmt.Errorf("cgroups: invalid pids limit %d: use 0 or -1 for unlimited", r.PidsLimit)
	case r.PidsLimit > 0:
		l.pids = r.PidsLimit
	}
	return l, nil
}

// needs reports which controllers the limits cannot do without.
func (l limits) needs() []string {
	var out []string
	if l.memory > 0 {
		out = append(out, "memory")
	}
	if l.quota > 0 {
		out = append(out, "cpu")
	}
	if l.pids > 0 {
		out = append(out, "pids")
	}
	return out
}

// setting is one write into a cgroup interface file.
type setting struct {
	file, value string
	// swap marks the swap limit: its file is missing when the kernel does
	// not account swap, which is a warning rather than an error.
	swap bool
}

// settings lists, in the order they must be written, the files that set l
// for one controller on a v1 or v2 hierarchy.
func (l limits) settings(controller string, v2 bool) []setting {
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	var out []setting
	switch controller {
	case "memory":
		if l.memory == 0 {
			break
		}
		if v2 {
			swap := "max"
			if l.memsw >= 0 {
				swap = itoa(l.memsw - l.memory)
			}
			out = append(out, setting{file: "memory.max", value: itoa(l.memory)},
				setting{file: "memory.swap.max", value: swap, swap: true})
			break
		}
		// v1 refuses memsw below memory, so memory goes first (both start
		// unlimited in a new group).
		out = append(out, setting{file: "memory.limit_in_bytes", value: itoa(l.memory)},
			setting{file: "memory.memsw.limit_in_bytes", value: itoa(l.memsw), swap: true})
	case "cpu":
		if l.quota == 0 {
			break
		}
		if v2 {
			out = append(out, setting{file: "cpu.max", value: itoa(l.quota) + " " + itoa(CPUPeriod)})
			break
		}
		out = append(out, setting{file: "cpu.cfs_period_us", value: itoa(CPUPeriod)},
			setting{file: "cpu.cfs_quota_us", value: itoa(l.quota)})
	case "pids":
		if l.pids > 0 {
			out = append(out, setting{file: "pids.max", value: itoa(l.pids)})
		}
	}
	return out
}
