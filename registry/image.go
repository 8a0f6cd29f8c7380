package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is an image manifest held in the store, with its parsed config and
// layers. It is a snapshot of the blobs: changing its fields changes nothing
// on disk.
type Image struct {
	Digest       v1.Hash // manifest digest
	Size         int64   // manifest size in bytes
	Manifest     *v1.Manifest
	Config       *v1.ConfigFile
	ConfigDigest v1.Hash
	Layers       []Layer // base layer first
}

// Descriptor returns the descriptor of img's manifest, for indexes.
func (img *Image) Descriptor() v1.Descriptor {
	mt := img.Manifest.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	return v1.Descriptor{MediaType: mt, Size: img.Size, Digest: img.Digest}
}

// WriteImage writes the config and manifest blobs for an image made of
// layers (base first, all already in the store) and returns it. cfg is not
// modified: a copy gets RootFS set from the layers' diffIDs. oci selects OCI
// media types; otherwise Docker schema2 is written.
func (s *Store) WriteImage(ctx context.Context, cfg *v1.ConfigFile, layers []Layer, oci bool) (*Image, error) {
	c := &v1.ConfigFile{}
	if cfg != nil {
		c = cfg.DeepCopy()
	}
	c.RootFS = v1.RootFS{Type: "layers", DiffIDs: make([]v1.Hash, 0, len(layers))}
	descs := make([]v1.Descriptor, 0, len(layers))
	for _, l := range layers {
		size, err := s.statBlob(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("writing image: layer %s: %w", l.Digest, err)
		}
		mt := l.MediaType
		if mt == "" {
			if mt, err = s.sniffLayerType(l.Digest); err != nil {
				return nil, fmt.Errorf("writing image: %w", err)
			}
		}
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, l.DiffID)
		descs = append(descs, v1.Descriptor{MediaType: manifestLayerType(mt, oci), Size: size, Digest: l.Digest})
	}
	rawCfg, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	cfgDigest, cfgSize, err := s.writeBlobBytes(ctx, rawCfg)
	if err != nil {
		return nil, fmt.Errorf("writing image config: %w", err)
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: cfgSize, Digest: cfgDigest},
		Layers:        descs,
	}
	if oci {
		m.MediaType = types.OCIManifestSchema1
		m.Config.MediaType = types.OCIConfigJSON
	}
	rawM, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding image manifest: %w", err)
	}
	d, _, err := s.writeBlobBytes(ctx, rawM)
	if err != nil {
		return nil, fmt.Errorf("writing image manifest: %w", err)
	}
	return s.Image(d)
}

// manifestLayerType maps a layer media type to the flavour of the manifest.
// zstd has no Docker media type; like BuildKit we keep the OCI one.
func manifestLayerType(mt types.MediaType, oci bool) types.MediaType {
	switch mt {
	case types.OCILayer, types.DockerLayer:
		if oci {
			return types.OCILayer
		}
		return types.DockerLayer
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		if oci {
			return types.OCIUncompressedLayer
		}
		return types.DockerUncompressedLayer
	}
	return mt
}

// Image loads the image whose manifest blob is d.
func (s *Store) Image(d v1.Hash) (*Image, error) {
	img, _, _, err := s.loadImage(d)
	return img, err
}

// loadImage also returns the raw manifest and config bytes.
func (s *Store) loadImage(d v1.Hash) (*Image, []byte, []byte, error) {
	rawM, err := s.readBlob(d)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading image: %w", err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawM))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parsing manifest %s: %w", d, err)
	}
	if (m.MediaType != "" && !m.MediaType.IsImage()) || m.Config.Digest.Hex == "" {
		return nil, nil, nil, fmt.Errorf("loading image %s: not an image manifest (media type %q)", d, m.MediaType)
	}
	rawCfg, err := s.readBlob(m.Config.Digest)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading image %s config: %w", d, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parsing config of image %s: %w", d, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, nil, nil, fmt.Errorf("loading image %s: %d layers but %d diff_ids", d, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	layers := make([]Layer, len(m.Layers))
	for i, l := range m.Layers {
		layers[i] = Layer{Digest: l.Digest, DiffID: cfg.RootFS.DiffIDs[i], Size: l.Size, MediaType: l.MediaType}
	}
	return &Image{
		Digest:       d,
		Size:         int64(len(rawM)),
		Manifest:     m,
		Config:       cfg,
		ConfigDigest: m.Config.Digest,
		Layers:       layers,
	}, rawM, rawCfg, nil
}
