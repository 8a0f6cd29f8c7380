package integration

import (
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
}

// ociImage is one image of an OCI layout.
type ociImage struct {
	dir      string
	tag      string // its org.opencontainers.image.ref.name
	digest   string // manifest digest
	manifest manifest
	config   imageConfig
}

func blobPath(dir, digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(dir, "blobs", alg, hex)
}

// readLayout reads the image named tag from the OCI layout dir (or its only
// image when the layout holds one).
func readLayout(t *testing.T, dir, tag string) *ociImage {
	t.Helper()
	var index struct{ Manifests []descriptor }
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	var chosen *descriptor
	for i, m := range index.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag {
			chosen = &index.Manifests[i]
		}
	}
	if chosen == nil && len(index.Manifests) == 1 {
		chosen = &index.Manifests[0]
	}
	if chosen == nil {
		t.Fatalf("OCI layout %s: no image named %q in %+v", dir, tag, index.Manifests)
	}
	img := &ociImage{dir: dir, digest: chosen.Digest, tag: chosen.Annotations["org.opencontainers.image.ref.name"]}
	readJSON(t, blobPath(dir, chosen.Digest), &img.manifest)
	readJSON(t, blobPath(dir, img.manifest.Config.Digest), &img.config)
	if len(img.config.RootFS.DiffIDs) != len(img.manifest.Layers) {
		t.Errorf("OCI layout %s: %d diff_ids for %d layers", dir, len(img.config.RootFS.DiffIDs), len(img.manifest.Layers))
	}
	return img
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// layerEntries lists the normalised tar entry names of layer i (negative
// counts from the end).
func (img *ociImage) layerEntries(t *testing.T, i int) []string {
	t.Helper()
	if i < 0 {
		i += len(img.manifest.Layers)
	}
	names, err := img.entries(i)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func (img *ociImage) entries(i int) ([]string, error) {
	if i < 0 || i >= len(img.manifest.Layers) {
		return nil, fmt.Errorf("image has %d layers, no layer %d", len(img.manifest.Layers), i)
	}
	l := img.manifest.Layers[i]
	f, err := os.Open(blobPath(img.dir, l.Digest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.Contains(l.MediaType, "gzip"):
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %v", l.Digest, err)
		}
		r = gz
	case strings.Contains(l.MediaType, "zstd"):
		return nil, fmt.Errorf("layer %s: zstd layers not supported by the test", l.Digest)
	}
	tr := tar.NewReader(r)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %v", l.Digest, err)
		}
		names = append(names, normEntry(h.Name))
	}
}

func normEntry(n string) string {
	n = strings.TrimPrefix(n, "./")
	n = strings.TrimLeft(n, "/")
	return strings.TrimRight(n, "/")
}

// resolveIn returns the host path of the image path p inside rootfs:
// symlinks in intermediate components are followed within rootfs (absolute
// targets restart at rootfs, ".." stops at its top); the last component is
// not followed.
func resolveIn(rootfs, p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%q is not absolute", p)
	}
	todo := strings.Split(strings.Trim(p, "/"), "/")
	var cur []string // resolved components
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		if len(todo) == 0 {
			cur = append(cur, c)
			break
		}
		host := filepath.Join(rootfs, filepath.Join(append(cur, c)...))
		fi, err := os.Lstat(host)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			cur = append(cur, c)
			continue
		}
		if links++; links > 255 {
			return "", fmt.Errorf("%s: too many symlinks", p)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return filepath.Join(append([]string{rootfs}, cur...)...), nil
}

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"usr/bin/f":  "x",
		"bin":        "->usr/bin",
		"abs":        "->/usr",
		"up":         "->../../../usr",
		"usr/loop":   "->loop",
		"usr/lnk":    "->bin/f",
		"usr/bin/d/": "",
	})
	tests := []struct{ in, want string }{
		{"/bin/f", "usr/bin/f"},
		{"/bin", "bin"},                  // last component not followed
		{"/abs/bin/f", "usr/bin/f"},      // absolute target restarts at the root
		{"/up/bin/f", "usr/bin/f"},       // ".." stops at the root
		{"/usr/lnk", "usr/lnk"},          // last component is the link itself
		{"/usr/bin/d/../f", "usr/bin/f"}, // lexical ".."
		{"/", ""},
	}
	for _, tc := range tests {
		got, err := resolveIn(root, tc.in)
		if err != nil {
			t.Errorf("resolveIn(%q): %v", tc.in, err)
			continue
		}
		if want := filepath.Join(root, tc.want); got != want {
			t.Errorf("resolveIn(%q) = %q, want %q", tc.in, got, want)
		}
	}
	if _, err := resolveIn(root, "/usr/loop/x"); err == nil {
		t.Errorf("resolveIn through a symlink loop succeeded")
	}
}

// validateLayout runs go-containerregistry's full image validation (digests,
// diff IDs, sizes, config) on every image in an OCI layout.
func validateLayout(t *testing.T, dir string) {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("reading OCI layout %s: %v", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("image %s fails validation: %v", d.Digest, err)
		}
	}
}
