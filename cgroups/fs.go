package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writeFile writes value to a cgroup interface file. The file must exist:
// cgroupfs never lets us create one, and a missing file is a clearer error.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		// One write: cgroup files take a value per write(2).
		_, err = f.Write([]byte(value))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, path, bareErr(err))
	}
	return nil
}

// bareErr drops the *PathError wrapper so messages name the path once.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cgroups: read %s: %w", path, bareErr(err))
	}
	return strings.TrimSpace(string(b)), nil
}

// unlimitedV1 is where v1 counters saturate: "unlimited" reads back as the
// largest page-aligned int64, so anything this large means no limit.
const unlimitedV1 = 1 << 62

// readInt reads a file holding one integer; "max" (v2) and v1's saturated
// values read as -1.
func readInt(path string) (int64, error) {
	s, err := readFile(path)
	if err != nil {
		return 0, err
	}
	if s == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroups: read %s: unexpected content %q", path, s)
	}
	if n >= unlimitedV1 {
		return -1, nil
	}
	return n, nil
}

// readKeyed reads the value of key from a flat keyed file ("key value"
// lines: memory.events, memory.oom_control, cpu.stat, memory.stat).
// found is false when the file has no such key.
func readKeyed(path, key string) (n int64, found bool, err error) {
	s, err := readFile(path)
	if err != nil {
		return 0, false, err
	}
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("cgroups: read %s: %s has value %q", path, key, v)
		}
		return n, true, nil
	}
	return 0, false, nil
}

// readPids reads a cgroup.procs file.
func readPids(dir string) ([]int, error) {
	s, err := readFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(s) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroups: read %s/cgroup.procs: unexpected entry %q", dir, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
