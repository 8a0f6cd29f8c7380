package registry

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func builtImage(t *testing.T, oci bool) (*Store, *Image) {
	t.Helper()
	s := newStore(t)
	img, err := s.WriteImage(context.Background(), testConfig(), writeTestLayers(t, s, 2, Gzip), oci)
	if err != nil {
		t.Fatal(err)
	}
	return s, img
}

func TestWriteOCILayout(t *testing.T) {
	s, img := builtImage(t, true)
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteOCILayout(s.V1(img), dir, []string{"v1", "latest"}); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range im.Manifests {
		if d.Digest != img.Digest {
			t.Errorf("index entry %s, want %s", d.Digest, img.Digest)
		}
		names = append(names, d.Annotations[RefNameAnnotation])
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"latest", "v1"}) {
		t.Errorf("ref names %v", names)
	}
	got, err := idx.Image(img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}

	// A second image appends to the existing layout.
	img2, err := s.WriteImage(context.Background(), testConfig(), img.Layers[:1], true)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteOCILayout(s.V1(img2), dir, nil); err != nil {
		t.Fatal(err)
	}
	idx, _ = layout.ImageIndexFromPath(dir)
	if im, err = idx.IndexManifest(); err != nil || len(im.Manifests) != 3 {
		t.Fatalf("after append: %d entries, %v", len(im.Manifests), err)
	}
}

func TestWriteDockerArchive(t *testing.T) {
	for _, oci := range []bool{false, true} {
		s, img := builtImage(t, oci)
		file := filepath.Join(t.TempDir(), "image.tar")
		tags := []string{"example.com/app:v1", "busybox"}
		if err := WriteDockerArchive(s.V1(img), file, tags); err != nil {
			t.Fatal(err)
		}
		repoTags := archiveRepoTags(t, file)
		slices.Sort(repoTags)
		if want := []string{"busybox:latest", "example.com/app:v1"}; !slices.Equal(repoTags, want) {
			t.Errorf("RepoTags = %v, want %v", repoTags, want)
		}
		tag, _ := name.NewTag("example.com/app:v1")
		got, err := tarball.ImageFromPath(file, &tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil {
			t.Fatalf("oci=%v validate.Image: %v", oci, err)
		}
		cn, _ := got.ConfigName()
		if cn != img.ConfigDigest {
			t.Errorf("config %s, want %s", cn, img.ConfigDigest)
		}
		ents, _ := os.ReadDir(filepath.Dir(file))
		if len(ents) != 1 {
			t.Errorf("temp files left next to the archive: %v", ents)
		}
	}
}

func TestWriteDockerArchiveUntagged(t *testing.T) {
	s, img := builtImage(t, false)
	file := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteDockerArchive(s.V1(img), file, nil); err != nil {
		t.Fatal(err)
	}
	if tags := archiveRepoTags(t, file); len(tags) != 0 {
		t.Errorf("untagged archive has RepoTags %v", tags)
	}
	got, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
	if err := WriteDockerArchive(s.V1(img), file, []string{"Not A Tag"}); err == nil {
		t.Error("invalid tag accepted")
	}
}

// archiveRepoTags reads manifest.json's RepoTags from a docker archive.
func archiveRepoTags(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatal("no manifest.json in archive")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 {
			t.Fatalf("manifest.json has %d entries", len(m))
		}
		return m[0].RepoTags
	}
}
