package integration

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBuildFailures checks failing builds: non-zero exit, a message that
// names the problem, and nothing left behind.
func TestBuildFailures(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name       string
		dockerfile string
		want       []string // substrings of stderr
	}{
		{"unknown instruction", "FROM busybox\nRUNN echo hi\n", []string{"Dockerfile:2", "unknown instruction"}},
		{"RUN exit code", "FROM busybox\nRUN echo first-line; echo the-last-output-line; exit 3\n",
			[]string{"exit code: 3", "the-last-output-line", "Dockerfile:2"}},
		{"missing COPY source", "FROM busybox\nCOPY does-not-exist.txt /x\n", []string{"does-not-exist.txt", "Dockerfile:2"}},
		{"unknown base image", "FROM busybox\nFROM no-such-image-strata-test:v0\nRUN true\n", []string{"no-such-image-strata-test"}},
		{"failure in a later stage", "FROM busybox AS a\nRUN echo ok > /ok\nFROM a\nRUN false\n", []string{"exit code: 1", "Dockerfile:4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, ctx := t.TempDir(), t.TempDir()
			writeFiles(t, ctx, map[string]string{"Dockerfile": tc.dockerfile, "present.txt": "x\n"})
			before := mounts(t)
			r := build(t, buildOpts{root: root, context: ctx, mirror: true})
			if r.code == 0 {
				t.Fatalf("build succeeded, want a failure:\n%s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, tail(r.stderr, 30))
				}
			}
			checkNoLeftovers(t, root, before)
		})
	}
}

// TestBuildInterrupt sends SIGINT while a RUN step sleeps: strata must exit
// quickly with a non-zero status and leave no process, mount or temp dir.
func TestBuildInterrupt(t *testing.T) {
	needRoot(t)
	root, ctx := t.TempDir(), t.TempDir()
	buf := make([]byte, 8)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	marker := "STRATA_TEST_MARKER=" + hex.EncodeToString(buf)
	writeFiles(t, ctx, map[string]string{"Dockerfile": fmt.Sprintf(
		"FROM busybox\nENV %s\nRUN echo step-started && sleep 30\nRUN echo never > /never\n", marker)})
	before := mounts(t)

	cmd := exec.Command(fx.bin, append([]string{"--root", root}, buildOpts{context: ctx, mirror: true}.args()...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		done <- cmd.Wait()
	}()
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
		}
	}()

	// Wait for the RUN's sleep to be running.
	var out []string
	deadline := time.Now().Add(2 * time.Minute)
	for !sleeping(marker) {
		if time.Now().After(deadline) {
			t.Fatalf("the RUN step's sleep never started:\n%s", strings.Join(out, "\n"))
		}
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("strata ended before the sleep started:\n%s", strings.Join(out, "\n"))
			}
			out = append(out, l)
		case <-time.After(50 * time.Millisecond):
		}
	}
	start := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // keep the reader going until strata exits
		}
	}()
	select {
	case err = <-done:
		killed = true
	case <-time.After(15 * time.Second):
		t.Fatalf("strata still running 15s after SIGINT")
	}
	took := time.Since(start)
	t.Logf("strata exited %s after SIGINT: %v", took, err)
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) {
		t.Errorf("strata exited with %v after SIGINT, want a non-zero status", err)
	}
	if took > 5*time.Second {
		t.Errorf("strata took %s to exit after SIGINT, want a few seconds at most", took)
	}
	// The sandbox's processes are killed with its PID namespace; allow the
	// kernel a moment to reap them.
	for i := 0; i < 20 && len(markedProcs(marker)) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range markedProcs(marker) {
		t.Errorf("RUN process %d (%s) outlived the interrupted build", pid, cmdline(pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	checkNoLeftovers(t, root, before)
	if _, err := os.Stat(filepath.Join(root, "snapshots")); err == nil {
		// A later build with the same root must still work.
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN echo after > /after\n"})
		mustBuild(t, buildOpts{root: root, context: ctx, mirror: true})
	}
}

// sleeping reports whether a `sleep` of the build marked by marker runs.
func sleeping(marker string) bool {
	for _, pid := range markedProcs(marker) {
		if strings.HasPrefix(cmdline(pid), "sleep") {
			return true
		}
	}
	return false
}

// TestBuildHostileContext: context symlinks that point outside the context
// must not make COPY read host files; the build either fails or resolves
// the link inside the context.
func TestBuildHostileContext(t *testing.T) {
	needRoot(t)
	host := readFile(t, "/etc/passwd")
	tests := []struct{ name, link, target, src string }{
		{"file symlink to /etc/passwd", "passwd", "/etc/passwd", "passwd"},
		{"dir symlink to /etc", "etcdir", "/etc", "etcdir/passwd"},
		{"relative symlink out of the context", "up", "../../../../../../../../etc/passwd", "up"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, ctx := t.TempDir(), t.TempDir()
			writeFiles(t, ctx, map[string]string{
				"Dockerfile": "FROM busybox\nCOPY " + tc.src + " /copied\n",
				"etc/passwd": "in-context\n",
				tc.link:      "->" + tc.target,
			})
			out := filepath.Join(t.TempDir(), "out")
			before := mounts(t)
			r := build(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out}})
			checkNoLeftovers(t, root, before)
			if r.code != 0 {
				t.Logf("refused (fine): %s", tail(r.stderr, 3))
				return
			}
			fi, err := os.Lstat(filepath.Join(out, "copied"))
			if err != nil {
				t.Fatalf("build succeeded but /copied: %v", err)
			}
			if !fi.Mode().IsRegular() {
				t.Fatalf("/copied is %s, want the in-context file or an error", fi.Mode())
			}
			got := readFile(t, filepath.Join(out, "copied"))
			if got == host {
				t.Fatalf("COPY %s copied the host's /etc/passwd", tc.src)
			}
			if got != "in-context\n" {
				t.Errorf("/copied = %q, want the in-context resolution %q", got, "in-context\n")
			}
		})
	}
}
