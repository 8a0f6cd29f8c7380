package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mountSnapshot is the set of mounts of /proc/self/mountinfo, keyed by
// mount point and source (mount ids are left out).
type mountSnapshot map[string]bool

func mounts(t *testing.T) mountSnapshot {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	s := mountSnapshot{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS
		key := strings.Join(append([]string{f[3], f[4]}, afterDash(f)...), " ")
		s[key] = true
	}
	return s
}

func afterDash(f []string) []string {
	for i, x := range f {
		if x == "-" {
			return f[i+1:]
		}
	}
	return nil
}

// newMounts lists mounts not in before that concern one of the dirs
// (mounted under them, or naming them in the source or options). Other
// mounts are left alone: other programs on the machine may mount too.
func (before mountSnapshot) newMounts(t *testing.T, dirs ...string) []string {
	t.Helper()
	var out []string
	for m := range mounts(t) {
		if before[m] {
			continue
		}
		for _, d := range dirs {
			if strings.Contains(m, d) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// procs lists the pids of processes for which match returns true.
func procs(match func(pid int, exe string, environ []byte) bool) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		exe, _ := os.Readlink(filepath.Join(dir, "exe"))
		env, _ := os.ReadFile(filepath.Join(dir, "environ"))
		if match(pid, exe, env) {
			out = append(out, pid)
		}
	}
	return out
}

// strataProcs are running processes of the test's strata binary (builds
// and their sandbox children, which re-execute /proc/self/exe).
func strataProcs() []int {
	return procs(func(_ int, exe string, _ []byte) bool {
		return exe == fx.bin || exe == fx.bin+" (deleted)"
	})
}

// markedProcs are processes whose environment holds marker (an ENV of the
// Dockerfile), i.e. RUN commands of that build.
func markedProcs(marker string) []int {
	return procs(func(_ int, _ string, env []byte) bool {
		return bytes.Contains(env, []byte(marker))
	})
}

// cmdline of a pid, NULs shown as blanks.
func cmdline(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// checkNoLeftovers asserts what a finished build (failed or not) must
// leave behind: nothing mounted, ROOT/tmp and ROOT/snapshots/tmp empty, no
// strata process still running.
func checkNoLeftovers(t *testing.T, root string, before mountSnapshot) {
	t.Helper()
	checkRootClean(t, "after the build", root, before)
	if p := strataProcs(); len(p) > 0 {
		var desc []string
		for _, pid := range p {
			desc = append(desc, strconv.Itoa(pid)+": "+cmdline(pid))
		}
		t.Errorf("strata processes still running:\n%s", strings.Join(desc, "\n"))
	}
}

// checkRootClean asserts that no mount concerning root appeared since
// before and that ROOT/tmp and ROOT/snapshots/tmp are empty. It is safe
// while other builds (with other roots) run.
func checkRootClean(t *testing.T, label, root string, before mountSnapshot) {
	t.Helper()
	if m := before.newMounts(t, root); len(m) > 0 {
		t.Errorf("%s: mounts left behind:\n%s", label, strings.Join(m, "\n"))
	}
	for _, d := range []string{"tmp", "snapshots/tmp"} {
		ents, err := os.ReadDir(filepath.Join(root, d))
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("%s: reading ROOT/%s: %v", label, d, err)
		}
		if len(ents) > 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%s: ROOT/%s not empty: %v", label, d, names)
		}
	}
}
