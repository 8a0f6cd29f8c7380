package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// debian makes the debian:bookworm base once per run, on first use.
func (f *fixture) debian(t *testing.T) []string {
	t.Helper()
	f.debianOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		start := time.Now()
		f.debianErr = f.makeDebian(ctx)
		fmt.Fprintf(os.Stderr, "integration: debian:bookworm base ready in %s (err=%v)\n", time.Since(start).Round(time.Second), f.debianErr)
	})
	if f.debianErr != nil {
		t.Fatalf("debian:bookworm base: %v", f.debianErr)
	}
	return f.debianDiffIDs
}

func (f *fixture) makeDebian(ctx context.Context) error {
	rootfs := filepath.Join(f.tmp, "debian-rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	cache := filepath.Join(os.TempDir(), "strata-test-debian-bookworm.tar")
	if _, err := os.Stat(cache); err != nil {
		mirror := aptMirror()
		err := run(ctx, "debootstrap", "--variant=minbase", "bookworm", rootfs, mirror)
		if uerr := unmountUnder(rootfs); uerr != nil && err == nil {
			err = uerr
		}
		if err != nil {
			return fmt.Errorf("debootstrap from %s (set STRATA_TEST_DEBIAN_MIRROR to another mirror): %w", mirror, err)
		}
		// Host files debootstrap copies in; the debian image has none of them.
		for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"} {
			_ = os.Remove(filepath.Join(rootfs, p))
		}
		debs, _ := filepath.Glob(filepath.Join(rootfs, "var/cache/apt/archives/*.deb"))
		for _, d := range debs {
			_ = os.Remove(d)
		}
		tmp := cache + fmt.Sprintf(".tmp-%d", os.Getpid())
		if err := run(ctx, "tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", tmp, "."); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, cache); err != nil {
			return err
		}
	} else if err := run(ctx, "tar", "--numeric-owner", "--xattrs", "-xpf", cache, "-C", rootfs); err != nil {
		return fmt.Errorf("unpacking the cached %s (delete it to debootstrap again): %w", cache, err)
	}
	ids, err := f.importAndPush(ctx, rootfs, "library/debian:bookworm", `CMD ["bash"]`)
	f.debianDiffIDs = ids
	return err
}

// unmountUnder detaches whatever is still mounted under dir (debootstrap
// mounts /proc and /sys in the target and may leave them on failure), so
// that removing dir cannot reach into them.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points))) // children first
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmounting %s: %w", p, err)
		}
	}
	return nil
}

// aptMirror is the Debian mirror this machine's apt uses (first URI that
// serves the bookworm suite), or deb.debian.org.
func aptMirror() string {
	if m := os.Getenv("STRATA_TEST_DEBIAN_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		if m := mirrorFromSources(string(b)); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

// mirrorFromSources reads one-line ("deb [opts] URI SUITE ...") and deb822
// ("URIs:" / "Suites:" stanzas) source lists.
func mirrorFromSources(text string) string {
	var uris, suites []string
	flush := func() string {
		for _, s := range suites {
			if s == "bookworm" && len(uris) > 0 {
				return uris[0]
			}
		}
		uris, suites = nil, nil
		return ""
	}
	for _, line := range strings.Split(text+"\n\n", "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if line == "" {
			if m := flush(); m != "" {
				return m
			}
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		switch {
		case strings.EqualFold(k, "URIs"):
			uris = strings.Fields(v)
		case strings.EqualFold(k, "Suites"):
			suites = strings.Fields(v)
		case strings.HasPrefix(line, "deb "):
			f := strings.Fields(line)[1:]
			if len(f) > 0 && strings.HasPrefix(f[0], "[") {
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				if len(f) > 0 {
					f = f[1:]
				}
			}
			if len(f) >= 2 && f[1] == "bookworm" {
				return f[0]
			}
		}
	}
	return ""
}
