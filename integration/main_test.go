package integration

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is the state shared by all tests of the package: the strata
// binary, a running docker-registry and the base images pushed to it.
type fixture struct {
	skip     string // non-empty: why the tests that need root cannot run
	tmp      string
	bin      string // the strata binary
	repo     string // repository root
	registry string // 127.0.0.1:PORT of Debian's docker-registry
	regCmd   *exec.Cmd
	regDone  chan struct{}

	busyboxDiffIDs []string

	debianOnce    sync.Once
	debianErr     error
	debianDiffIDs []string
}

// fx is the TestMain fixture (the only package-level state).
var fx *fixture

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	fx = &fixture{}
	if reason := missingPrerequisite(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "integration: FAIL: %s (CI=true: these tests must run)\n", reason)
			return 1
		}
		fmt.Fprintf(os.Stderr, "integration: skipping the end-to-end tests: %s\n", reason)
		fx.skip = reason
		return m.Run() // pure tests (the expect parser) still run
	}
	err := fx.setup()
	defer fx.teardown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: setup failed: %v\n", err)
		return 1
	}
	return m.Run()
}

// needRoot skips a test when TestMain found the machine unfit.
func needRoot(t *testing.T) *fixture {
	t.Helper()
	if fx.skip != "" {
		t.Skip(fx.skip)
	}
	return fx
}

func missingPrerequisite() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	for _, tool := range []string{"go", "docker-registry", "skopeo", "umoci", "debootstrap", "chroot", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s not found in PATH", tool)
		}
	}
	f, err := elf.Open("/bin/busybox")
	if err != nil {
		return fmt.Sprintf("/bin/busybox (busybox-static) unusable: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "/bin/busybox is dynamically linked; install busybox-static"
		}
	}
	fsys, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fsys), "overlay") {
		if exec.Command("modprobe", "overlay").Run() != nil {
			return "overlayfs is not available"
		}
	}
	return ""
}

func (f *fixture) setup() error {
	var err error
	if f.tmp, err = os.MkdirTemp("", "strata-integration-"); err != nil {
		return err
	}
	if f.repo, err = filepath.Abs(".."); err != nil {
		return err
	}
	f.bin = filepath.Join(f.tmp, "strata")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", f.bin, "./cmd/strata")
	build.Dir = f.repo
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/strata: %v\n%s", err, out)
	}
	if err := f.startRegistry(); err != nil {
		return err
	}
	return f.makeBusybox(ctx)
}

func (f *fixture) teardown() {
	if f.regCmd != nil && f.regCmd.Process != nil {
		_ = f.regCmd.Process.Signal(os.Interrupt)
		select {
		case <-f.regDone:
		case <-time.After(5 * time.Second):
			_ = f.regCmd.Process.Kill()
			<-f.regDone
		}
	}
	if f.tmp != "" {
		if err := os.RemoveAll(f.tmp); err != nil {
			fmt.Fprintf(os.Stderr, "integration: cleanup: %v\n", err)
		}
	}
}

// startRegistry runs Debian's docker-registry on a free loopback port.
func (f *fixture) startRegistry() error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr := l.Addr().String()
		l.Close()
		dir := filepath.Join(f.tmp, "registry")
		conf := filepath.Join(f.tmp, "registry.yml")
		yml := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"+
			"storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"+
			"http:\n  addr: %s\n", dir, addr)
		if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
			return err
		}
		logf, err := os.Create(filepath.Join(f.tmp, "registry.log"))
		if err != nil {
			return err
		}
		cmd := exec.Command("docker-registry", "serve", conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("starting docker-registry: %w", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
		if lastErr = waitStatus(http.DefaultClient, "http://"+addr+"/v2/", http.StatusOK, done); lastErr == nil {
			f.registry, f.regCmd, f.regDone = addr, cmd, done
			return nil
		}
		_ = cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(filepath.Join(f.tmp, "registry.log"))
		lastErr = fmt.Errorf("docker-registry on %s: %v\n%s", addr, lastErr, log)
	}
	return lastErr
}

// waitStatus waits until GET url answers with status want (a registry
// coming up: 200, or 401 when it wants credentials).
func waitStatus(c *http.Client, url string, want int, exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited")
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no %d on %s within 20s", want, url)
}

// run runs a setup command, returning its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// makeBusybox builds the busybox base as the corpus README describes,
// imports it into a seed store and pushes it as library/busybox:latest.
func (f *fixture) makeBusybox(ctx context.Context) error {
	rootfs := filepath.Join(f.tmp, "busybox-rootfs")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "tmp", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(rootfs, d), 0o1777); err != nil {
			return err
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	if err := run(ctx, "chroot", rootfs, "/bin/busybox", "--install", "-s"); err != nil {
		return err
	}
	// --install -s links to /bin/busybox; the base has bin/sh -> busybox.
	sh := filepath.Join(rootfs, "bin/sh")
	if err := os.Remove(sh); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Symlink("busybox", sh); err != nil {
		return err
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	ids, err := f.importAndPush(ctx, rootfs, "library/busybox:latest", `CMD ["/bin/sh"]`)
	f.busyboxDiffIDs = ids
	return err
}

func (f *fixture) importAndPush(ctx context.Context, rootfs, repoTag, cmd string) ([]string, error) {
	seed := filepath.Join(f.tmp, "seed")
	local := strings.TrimPrefix(repoTag, "library/")
	if err := run(ctx, f.bin, "--root", seed, "import", "-t", local, "-c", "ENV PATH="+defaultPath, "-c", cmd, rootfs); err != nil {
		return nil, err
	}
	ref := f.registry + "/" + repoTag
	if err := run(ctx, f.bin, "--root", seed, "push", local, ref); err != nil {
		return nil, err
	}
	cfg, err := inspectConfig(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != 1 {
		return nil, fmt.Errorf("%s: %d layers, want 1", ref, len(cfg.RootFS.DiffIDs))
	}
	return cfg.RootFS.DiffIDs, nil
}
