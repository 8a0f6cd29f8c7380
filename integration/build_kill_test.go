package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBuildSIGKILL kills builds with SIGKILL at several points and then
// checks that a build on the same root gives exactly what a build on a
// fresh root gives: nothing a killed build left behind is trusted.
func TestBuildSIGKILL(t *testing.T) {
	needRoot(t)
	ctx := t.TempDir()
	var df strings.Builder
	df.WriteString("FROM busybox\n")
	for i := 0; i < 6; i++ {
		df.WriteString("COPY f" + string(rune('0'+i)) + ".txt /f/\n")
		df.WriteString("RUN cat /f/* | sha256sum > /sum" + string(rune('0'+i)) + " && head -c 2000000 /dev/zero > /pad" + string(rune('0'+i)) + "\n")
	}
	files := map[string]string{"Dockerfile": df.String()}
	for i := 0; i < 6; i++ {
		files["f"+string(rune('0'+i))+".txt"] = strings.Repeat(string(rune('a'+i)), 1000)
	}
	writeFiles(t, ctx, files)

	reference := filepath.Join(t.TempDir(), "ref")
	mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + reference}})

	root := t.TempDir()
	before := mounts(t)
	for _, delay := range []time.Duration{30, 80, 150, 250, 400, 600} {
		cmd := exec.Command(fx.bin, append([]string{"--root", root}, buildOpts{context: ctx, mirror: true}.args()...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	// The killed builds' sandboxes die with them (their mounts with their
	// namespaces); give the kernel a moment to reap them.
	time.Sleep(200 * time.Millisecond)
	// Only mounts naming this root count: other programs may mount too.
	if left := before.newMounts(t, root, os.TempDir()); len(left) > 0 {
		t.Errorf("mounts left after SIGKILLed builds: %v", left)
	}

	out := filepath.Join(t.TempDir(), "out")
	mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out}})
	for i := 0; i < 6; i++ {
		name := "sum" + string(rune('0'+i))
		if got, want := readFile(t, filepath.Join(out, name)), readFile(t, filepath.Join(reference, name)); got != want {
			t.Errorf("/%s after killed builds = %q, a fresh root gives %q", name, got, want)
		}
		fi, err := os.Stat(filepath.Join(out, "pad"+string(rune('0'+i))))
		if err != nil || fi.Size() != 2000000 {
			t.Errorf("/pad%d after killed builds: %v (size %v), want 2000000 bytes", i, err, fi)
		}
	}
	for _, f := range []string{"f/f0.txt", "f/f5.txt"} {
		if got, want := readFile(t, filepath.Join(out, f)), readFile(t, filepath.Join(reference, f)); got != want {
			t.Errorf("/%s differs after killed builds", f)
		}
	}
}
