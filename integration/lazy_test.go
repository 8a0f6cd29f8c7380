package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type inspected struct {
	Digest   string
	Manifest struct {
		Layers []struct {
			MediaType string
			Digest    string
		}
	}
	Config struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
}

func inspectLocal(t *testing.T, root, ref string) inspected {
	t.Helper()
	var v inspected
	if err := json.Unmarshal([]byte(mustSucceed(t, runStrata(t, root, "inspect", ref), "inspect")), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLazyLayers follows a built layer from the build (kept in its
// snapshot, not compressed) through push (compressed, and then the local
// name means the pushed manifest), prune --all and a second push, and
// checks that a damaged snapshot fails a push instead of uploading wrong
// content.
func TestLazyLayers(t *testing.T) {
	f := needRoot(t)
	root := t.TempDir()
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM " + f.registry + "/library/busybox\n" +
		"RUN seq 1 50000 > /numbers && echo one > /marker\n"})
	mustBuild(t, buildOpts{root: root, context: ctx, tags: []string{"local/lazy:1"}})

	local := inspectLocal(t, root, "local/lazy:1")
	top := local.Manifest.Layers[len(local.Manifest.Layers)-1]
	diffIDs := local.Config.RootFS.DiffIDs
	if top.MediaType != "application/vnd.oci.image.layer.v1.tar" || top.Digest != diffIDs[len(diffIDs)-1] {
		t.Fatalf("the built layer is %s %s, want an uncompressed layer whose digest is its diffID %s", top.MediaType, top.Digest, diffIDs[len(diffIDs)-1])
	}
	if _, err := os.Stat(filepath.Join(root, "blobs", "sha256", strings.TrimPrefix(top.Digest, "sha256:"))); err == nil {
		t.Errorf("the build wrote the layer %s out as a blob", top.Digest)
	}

	ref := f.registry + "/lazy/app:1"
	pushed := strings.TrimSpace(mustSucceed(t, runStrata(t, root, "push", "local/lazy:1", ref), "push"))
	if served := manifestDigest(t, ref); served != pushed {
		t.Fatalf("push printed %s, the registry serves %s", pushed, served)
	}
	var raw struct {
		Layers []struct{ MediaType string }
	}
	if err := json.Unmarshal([]byte(runTool(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)), &raw); err != nil {
		t.Fatal(err)
	}
	for i, l := range raw.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("pushed layer %d is %s, want gzip", i, l.MediaType)
		}
	}
	if got := readConfig(t, ref).RootFS.DiffIDs; strings.Join(got, ",") != strings.Join(diffIDs, ",") {
		t.Errorf("pushed diff_ids %v, built %v", got, diffIDs)
	}
	if got := inspectLocal(t, root, "local/lazy:1").Digest; got != pushed {
		t.Errorf("after the push the local name is %s, want the pushed %s", got, pushed)
	}

	// The image's layer lives only in its snapshot: no prune may take it.
	mustSucceed(t, runStrata(t, root, "prune", "--all", "-f"), "prune --all")
	again := strings.TrimSpace(mustSucceed(t, runStrata(t, root, "push", "local/lazy:1", f.registry+"/lazy/app:2"), "push after prune --all"))
	if again != pushed {
		t.Errorf("second push gave %s, want %s", again, pushed)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	layout := filepath.Join(t.TempDir(), "oci")
	skopeoCopy(t, f.registry+"/lazy/app:2", layout, "v")
	if err := exec.Command("umoci", "raw", "unpack", "--rootless", "--image", layout+":v", rootfs).Run(); err != nil {
		t.Fatalf("umoci unpack of the pushed image: %v", err)
	}
	if got := readFile(t, filepath.Join(rootfs, "marker")); got != "one\n" {
		t.Errorf("/marker in the pushed image = %q", got)
	}

	// A snapshot changed behind the store's back (same size, other
	// bytes) is caught by the diffID check: the push fails, nothing is
	// tagged in the registry.
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM " + f.registry + "/library/busybox\nRUN echo two > /marker2\n"})
	mustBuild(t, buildOpts{root: root, context: ctx, tags: []string{"local/lazy:2"}})
	matches, _ := filepath.Glob(filepath.Join(root, "snapshots", "*", "fs", "marker2"))
	if len(matches) != 1 {
		t.Fatalf("found %d snapshots holding /marker2, want 1", len(matches))
	}
	if err := os.WriteFile(matches[0], []byte("TWO\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runStrata(t, root, "push", "local/lazy:2", f.registry+"/lazy/app:3")
	if r.code == 0 || !strings.Contains(r.stderr, "no longer matches") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("push of a damaged layer: want a one-line error naming the mismatch, got\n%s", r)
	}
	if err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+f.registry+"/lazy/app:3").Run(); err == nil {
		t.Error("the registry has lazy/app:3 although its push failed")
	}
}
