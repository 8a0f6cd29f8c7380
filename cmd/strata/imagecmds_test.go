package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/registry"
)

// storeWithImage makes a store holding one image of n one-file layers whose
// config has the given history.
func storeWithImage(t *testing.T, n int, history []v1.History) (*registry.Store, *registry.Image) {
	t.Helper()
	s, err := registry.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var layers []registry.Layer
	for i := range n {
		l, err := s.WriteLayer(context.Background(), func(w io.Writer) error {
			_, err := w.Write(bytes.Repeat([]byte{byte(i)}, 1024)) // not a tar; the store does not care
			return err
		}, registry.Gzip, 0)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := s.WriteImage(context.Background(), &v1.ConfigFile{OS: "linux", Architecture: "amd64", History: history}, layers, true)
	if err != nil {
		t.Fatal(err)
	}
	return s, img
}

func TestHistoryRows(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	hist := []v1.History{
		{Created: v1.Time{Time: t0}, CreatedBy: "ADD rootfs /", Comment: "base"},
		{Created: v1.Time{Time: t0.Add(time.Hour)}, CreatedBy: "ENV A=1", EmptyLayer: true},
		{Created: v1.Time{Time: t0.Add(2 * time.Hour)}, CreatedBy: "RUN /bin/sh -c echo one &&\n\techo two", Comment: "buildkit.dockerfile.v0"},
	}
	_, img := storeWithImage(t, 3, hist)
	rows := historyRows(img)
	// Newest first; the layer without history comes out as <missing>.
	want := []struct {
		by   string
		size int64
	}{
		{"<missing>", img.Layers[2].Size},
		{hist[2].CreatedBy, img.Layers[1].Size},
		{"ENV A=1", 0},
		{"ADD rootfs /", img.Layers[0].Size},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		if rows[i].createdBy != w.by || rows[i].size != w.size {
			t.Errorf("row %d = %q %d, want %q %d", i, rows[i].createdBy, rows[i].size, w.by, w.size)
		}
	}

	var out bytes.Buffer
	if err := writeHistory(&out, rows, false, true, t0.Add(50*time.Hour)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "CREATED ") || !strings.Contains(lines[0], "CREATED BY") || !strings.Contains(lines[0], "COMMENT") {
		t.Fatalf("table:\n%s", out.String())
	}
	if !strings.Contains(lines[2], "RUN /bin/sh -c echo one &&  echo two") || !strings.Contains(lines[2], "buildkit.dockerfile.v0") || !strings.Contains(lines[2], "2 days ago") {
		t.Errorf("RUN row %q", lines[2])
	}
	if !strings.Contains(lines[1], "<missing>") || !strings.Contains(lines[3], "0B") {
		t.Errorf("rows %q / %q", lines[1], lines[3])
	}

	long := []historyRow{{createdBy: strings.Repeat("x", 100), size: 2048}}
	out.Reset()
	writeHistory(&out, long, false, false, t0)
	if !strings.Contains(out.String(), strings.Repeat("x", createdByWidth-1)+"…") || strings.Contains(out.String(), strings.Repeat("x", createdByWidth)) {
		t.Errorf("not truncated:\n%s", out.String())
	}
	if !strings.Contains(out.String(), " 2048 ") {
		t.Errorf("-H=false size not in bytes:\n%s", out.String())
	}
	out.Reset()
	writeHistory(&out, long, true, true, t0)
	if !strings.Contains(out.String(), strings.Repeat("x", 100)) {
		t.Errorf("--no-trunc truncated:\n%s", out.String())
	}
}

func TestInspectJSON(t *testing.T) {
	s, img := storeWithImage(t, 1, []v1.History{{CreatedBy: "ADD x /"}})
	if err := s.Tag("example.test/app:1", img); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"example.test/app:1", img.Digest.String()} {
		b, err := inspectJSON(s, ref)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Ref, Digest string
			Manifest    v1.Manifest
			Config      v1.ConfigFile
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		if got.Digest != img.Digest.String() || got.Manifest.Config.Digest != img.ConfigDigest || got.Config.History[0].CreatedBy != "ADD x /" {
			t.Errorf("inspect %s:\n%s", ref, b)
		}
		if ref == img.Digest.String() && got.Ref != ref || ref != img.Digest.String() && got.Ref != "example.test/app:1" {
			t.Errorf("Ref = %q for %s", got.Ref, ref)
		}
		if !strings.Contains(string(b), "\n  \"Manifest\": {\n    \"schemaVersion\": 2") {
			t.Errorf("not indented JSON:\n%s", b)
		}
	}
	if _, err := inspectJSON(s, "example.test/absent:1"); err == nil || !strings.Contains(err.Error(), "no such image") {
		t.Errorf("inspect of an absent image: %v", err)
	}
}

func TestUntag(t *testing.T) {
	s, img := storeWithImage(t, 1, nil)
	for _, r := range []string{"example.test/a:1", "example.test/b:1", "busybox"} {
		if err := s.Tag(r, img); err != nil {
			t.Fatal(err)
		}
	}
	got, err := untag(s, "busybox")
	if err != nil || !slices.Equal(got, []string{"index.docker.io/library/busybox:latest"}) {
		t.Errorf("untag busybox = %v, %v", got, err)
	}
	if _, err := untag(s, "busybox"); err == nil || !strings.Contains(err.Error(), "no such image") {
		t.Errorf("second untag: %v", err)
	}
	got, err = untag(s, img.Digest.String())
	if err != nil || !slices.Equal(got, []string{"example.test/a:1", "example.test/b:1"}) {
		t.Errorf("untag by digest = %v, %v", got, err)
	}
	if refs, _ := s.List(); len(refs) != 0 {
		t.Errorf("tags left: %v", refs)
	}
	if !s.HasBlob(img.Digest) {
		t.Error("rmi removed the manifest blob; blobs are for prune")
	}
	if _, err := untag(s, img.Digest.String()); err == nil {
		t.Error("untag of a digest no tag names succeeded")
	}
}
