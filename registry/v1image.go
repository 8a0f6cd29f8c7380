package registry

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// V1 returns a go-containerregistry image served from the store's blobs:
// the exact manifest and config bytes, and the compressed layer blobs as
// stored. Only img.Digest is consulted; everything else is read from disk on
// each call, so the result always describes what the store holds.
func (s *Store) V1(img *Image) v1.Image {
	return &storeImage{s: s, digest: img.Digest}
}

type storeImage struct {
	s      *Store
	digest v1.Hash
}

var _ v1.Image = (*storeImage)(nil)

func (i *storeImage) load() (*Image, []byte, []byte, error) {
	return i.s.loadImage(i.digest)
}

func (i *storeImage) Layers() ([]v1.Layer, error) {
	img, _, _, err := i.load()
	if err != nil {
		return nil, err
	}
	ls := make([]v1.Layer, len(img.Layers))
	for n, l := range img.Layers {
		ls[n] = &storeLayer{s: i.s, l: l}
	}
	return ls, nil
}

func (i *storeImage) MediaType() (types.MediaType, error) {
	img, _, _, err := i.load()
	if err != nil {
		return "", err
	}
	return img.Descriptor().MediaType, nil
}

func (i *storeImage) Size() (int64, error) {
	return i.s.statBlob(i.digest)
}

func (i *storeImage) ConfigName() (v1.Hash, error) {
	img, _, _, err := i.load()
	if err != nil {
		return v1.Hash{}, err
	}
	return img.ConfigDigest, nil
}

func (i *storeImage) ConfigFile() (*v1.ConfigFile, error) {
	img, _, _, err := i.load()
	if err != nil {
		return nil, err
	}
	return img.Config, nil
}

func (i *storeImage) RawConfigFile() ([]byte, error) {
	_, _, raw, err := i.load()
	return raw, err
}

func (i *storeImage) Digest() (v1.Hash, error) { return i.digest, nil }

func (i *storeImage) Manifest() (*v1.Manifest, error) {
	img, _, _, err := i.load()
	if err != nil {
		return nil, err
	}
	return img.Manifest, nil
}

func (i *storeImage) RawManifest() ([]byte, error) {
	return i.s.readBlob(i.digest)
}

func (i *storeImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	img, _, _, err := i.load()
	if err != nil {
		return nil, err
	}
	if h == img.ConfigDigest {
		return partial.ConfigLayer(i)
	}
	for _, l := range img.Layers {
		if l.Digest == h {
			return &storeLayer{s: i.s, l: l}, nil
		}
	}
	return nil, fmt.Errorf("image %s has no layer with digest %s: %w", i.digest, h, ErrNotFound)
}

func (i *storeImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	img, _, _, err := i.load()
	if err != nil {
		return nil, err
	}
	for _, l := range img.Layers {
		if l.DiffID == h {
			return &storeLayer{s: i.s, l: l}, nil
		}
	}
	return nil, fmt.Errorf("image %s has no layer with diffID %s: %w", i.digest, h, ErrNotFound)
}

// storeLayer is a v1.Layer backed by a blob.
type storeLayer struct {
	s *Store
	l Layer
}

var _ v1.Layer = (*storeLayer)(nil)

func (l *storeLayer) Digest() (v1.Hash, error) { return l.l.Digest, nil }
func (l *storeLayer) DiffID() (v1.Hash, error) { return l.l.DiffID, nil }
func (l *storeLayer) Size() (int64, error)     { return l.l.Size, nil }

func (l *storeLayer) MediaType() (types.MediaType, error) { return l.l.MediaType, nil }

func (l *storeLayer) Compressed() (io.ReadCloser, error) { return l.s.OpenBlob(l.l.Digest) }

// Uncompressed has no context in the v1.Layer interface.
func (l *storeLayer) Uncompressed() (io.ReadCloser, error) {
	return l.s.OpenLayer(context.Background(), l.l)
}

// Exists lets validate and writers check presence without opening the blob.
func (l *storeLayer) Exists() (bool, error) { return l.s.HasBlob(l.l.Digest), nil }
