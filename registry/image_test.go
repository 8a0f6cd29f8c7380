package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// writeTestLayers stores n small layers with the given compression.
func writeTestLayers(t testing.TB, s *Store, n int, c Compression) []Layer {
	t.Helper()
	var ls []Layer
	for i := range n {
		tb := makeTar(t, map[string]string{fmt.Sprintf("file%d", i): fmt.Sprintf("content %d", i)})
		l, err := s.WriteLayer(context.Background(), func(w io.Writer) error {
			_, err := w.Write(tb)
			return err
		}, c, 0)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	return ls
}

func testConfig() *v1.ConfigFile {
	return &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Config:       v1.Config{Env: []string{"PATH=/usr/bin:/bin"}, Cmd: []string{"sh"}},
		RootFS:       v1.RootFS{Type: "bogus"},
	}
}

func TestWriteImageValidates(t *testing.T) {
	tests := []struct {
		oci        bool
		layers     int
		c          Compression
		manifestMT types.MediaType
		configMT   types.MediaType
		layerMT    types.MediaType
	}{
		{true, 2, Gzip, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer},
		{false, 2, Gzip, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer},
		{true, 1, Zstd, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayerZStd},
		{false, 1, Zstd, types.DockerManifestSchema2, types.DockerConfigJSON, types.OCILayerZStd},
		{true, 0, Gzip, types.OCIManifestSchema1, types.OCIConfigJSON, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("oci=%v/%d-%s", tc.oci, tc.layers, tc.c), func(t *testing.T) {
			s := newStore(t)
			layers := writeTestLayers(t, s, tc.layers, tc.c)
			cfg := testConfig()
			img, err := s.WriteImage(context.Background(), cfg, layers, tc.oci)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RootFS.Type != "bogus" {
				t.Error("WriteImage modified the caller's config")
			}
			if img.Manifest.MediaType != tc.manifestMT || img.Manifest.Config.MediaType != tc.configMT {
				t.Errorf("media types %s / %s", img.Manifest.MediaType, img.Manifest.Config.MediaType)
			}
			if img.Config.RootFS.Type != "layers" || len(img.Config.RootFS.DiffIDs) != tc.layers {
				t.Errorf("rootfs = %+v", img.Config.RootFS)
			}
			for i, l := range img.Layers {
				if l.DiffID != layers[i].DiffID || l.Digest != layers[i].Digest || l.Size != layers[i].Size {
					t.Errorf("layer %d = %+v, wrote %+v", i, l, layers[i])
				}
				if l.MediaType != tc.layerMT {
					t.Errorf("layer %d media type %s, want %s", i, l.MediaType, tc.layerMT)
				}
			}
			var opts []validate.Option
			if tc.c == Zstd {
				// validate's layer check only speaks gzip; diffIDs of zstd
				// layers are checked in TestV1LayersServeBlobs.
				opts = append(opts, validate.Fast)
			}
			if err := validate.Image(s.V1(img), opts...); err != nil {
				t.Fatalf("validate.Image: %v", err)
			}
			// Round trip through the blobs.
			again, err := s.Image(img.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if again.ConfigDigest != img.ConfigDigest || len(again.Layers) != len(img.Layers) || again.Size != img.Size {
				t.Errorf("reloaded image differs: %+v vs %+v", again, img)
			}
			raw, err := s.V1(img).RawManifest()
			if err != nil || sha(raw) != img.Digest || int64(len(raw)) != img.Size {
				t.Errorf("raw manifest does not hash to the digest (%v)", err)
			}
			if d := img.Descriptor(); d.Digest != img.Digest || d.MediaType != tc.manifestMT {
				t.Errorf("Descriptor() = %+v", d)
			}
		})
	}
}

func TestWriteImageDeterministic(t *testing.T) {
	s := newStore(t)
	layers := writeTestLayers(t, s, 2, Gzip)
	a, err := s.WriteImage(context.Background(), testConfig(), layers, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.WriteImage(context.Background(), testConfig(), layers, true)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Errorf("same inputs gave %s and %s", a.Digest, b.Digest)
	}
}

func TestWriteImageMissingLayer(t *testing.T) {
	s := newStore(t)
	l := Layer{Digest: sha([]byte("x")), DiffID: sha([]byte("y")), Size: 1, MediaType: types.OCILayer}
	if _, err := s.WriteImage(context.Background(), testConfig(), []Layer{l}, true); err == nil {
		t.Fatal("WriteImage with a missing layer blob succeeded")
	}
}

func TestImageRejectsNonManifest(t *testing.T) {
	s := newStore(t)
	layers := writeTestLayers(t, s, 1, Gzip)
	if _, err := s.Image(layers[0].Digest); err == nil {
		t.Error("Image(layer blob) succeeded")
	}
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	d, _, err := s.WriteBlob(context.Background(), bytes.NewReader(idx), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(d); err == nil {
		t.Error("Image(index blob) succeeded")
	}
	if _, err := s.Image(sha([]byte("absent"))); err == nil {
		t.Error("Image(absent) succeeded")
	}
}

func TestV1LayersServeBlobs(t *testing.T) {
	s := newStore(t)
	layers := writeTestLayers(t, s, 2, Zstd)
	img, err := s.WriteImage(context.Background(), testConfig(), layers, true)
	if err != nil {
		t.Fatal(err)
	}
	vi := s.V1(img)
	l, err := vi.LayerByDiffID(layers[1].DiffID)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if sha(got) != layers[1].DiffID {
		t.Error("Uncompressed() does not hash to the diffID")
	}
	cl, err := vi.LayerByDigest(img.ConfigDigest)
	if err != nil {
		t.Fatalf("LayerByDigest(config): %v", err)
	}
	if d, _ := cl.Digest(); d != img.ConfigDigest {
		t.Errorf("config layer digest %s", d)
	}
	if _, err := vi.LayerByDigest(sha([]byte("nope"))); err == nil {
		t.Error("LayerByDigest(unknown) succeeded")
	}
}
