package exec_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/snapshot"
)

func payload(t *testing.T, path, data string) []byte {
	t.Helper()
	b, err := json.Marshal(writeRequest{Path: path, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunHelperBind(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	scratch := t.TempDir()
	target := filepath.Join(scratch, "mnt", "dest")
	err := exec.RunHelper(t.Context(), exec.Helper{
		Name:    "write",
		Payload: payload(t, filepath.Join(target, "new"), "through the mount"),
		Mounts:  []snapshot.Mount{{Type: "bind", Source: src, Target: target}},
	}, nil)
	if err != nil {
		t.Fatalf("RunHelper: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(src, "new")); err != nil || string(b) != "through the mount" {
		t.Errorf("file in bind source: %q, %v", b, err)
	}
	if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
		t.Errorf("mount point on host should exist and be empty: %v, %v", ents, err)
	}
	checkNoMounts(t, scratch)
}

func TestRunHelperOverlay(t *testing.T) {
	e := newEnv(t)
	target := filepath.Join(e.tmp, "merged")
	err := exec.RunHelper(t.Context(), exec.Helper{
		Name:    "write",
		Payload: payload(t, filepath.Join(target, "bin", "added"), "x"),
		Mounts: []snapshot.Mount{{Type: "overlay", Source: "overlay", Target: target,
			Options: []string{"lowerdir=lower", "upperdir=" + e.upper, "workdir=" + e.work}}},
		SnapshotRoot: e.layers,
	}, nil)
	if err != nil {
		t.Fatalf("RunHelper: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(e.upper, "bin", "added")); err != nil || string(b) != "x" {
		t.Errorf("file in upper dir: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(e.lower, "bin", "added")); err == nil {
		t.Error("write reached the lower dir")
	}
	checkNoMounts(t, e.dir)
}

func TestRunHelperErrors(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		helper  exec.Helper
		wantErr string
	}{
		{"func error", exec.Helper{Name: "fail"}, "helper failed on purpose"},
		{"unknown name", exec.Helper{Name: "nosuch"}, `no helper registered as "nosuch"`},
		{"bad mount", exec.Helper{Name: "write", Mounts: []snapshot.Mount{
			{Type: "bind", Source: "/nonexistent/source", Target: filepath.Join(t.TempDir(), "m")}}}, "bind mounting /nonexistent/source"},
		{"no name", exec.Helper{}, "no helper name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := exec.RunHelper(t.Context(), tc.helper, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("RunHelper err %v (stderr %q), want one containing %q", err, stderr.String(), tc.wantErr)
			}
		})
	}
}
