package registry

import (
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// mountable wraps a store image for a push to dst: each blob recorded as
// present in another repository of dst's registry becomes a
// remote.MountableLayer naming that repository, so go-containerregistry
// asks the registry to mount it (POST ...?mount=DIGEST&from=REPO) when the
// HEAD finds it missing, and uploads it only if the registry declines.
func (s *Store) mountable(si *storeImage, dst name.Repository) (v1.Image, error) {
	img, err := s.Image(si.digest)
	if err != nil {
		return nil, err
	}
	f, err := s.readIndexFile()
	if err != nil {
		return nil, err
	}
	from := map[v1.Hash]name.Reference{}
	for _, d := range imageBlobs(img) {
		for _, src := range f.Sources[d.String()] {
			repo, err := name.NewRepository(src)
			if err != nil || repo.RegistryStr() != dst.RegistryStr() || repo.RepositoryStr() == dst.RepositoryStr() {
				continue
			}
			from[d] = repo.Tag("latest")
			break
		}
	}
	if len(from) == 0 {
		return si, nil
	}
	return &mountImage{Image: si, from: from}, nil
}

// mountImage is a v1.Image whose layers (and config) carry mount sources.
type mountImage struct {
	v1.Image
	from map[v1.Hash]name.Reference
}

func (m *mountImage) wrap(l v1.Layer) v1.Layer {
	d, err := l.Digest()
	if err != nil {
		return l
	}
	if ref, ok := m.from[d]; ok {
		return &remote.MountableLayer{Layer: l, Reference: ref}
	}
	return l
}

func (m *mountImage) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = m.wrap(l)
	}
	return out, nil
}

func (m *mountImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return m.wrap(l), nil
}

// ConfigLayer lets partial.ConfigLayer, which the pusher uses for the
// config blob, see the mount source too.
func (m *mountImage) ConfigLayer() (v1.Layer, error) {
	l, err := partial.ConfigLayer(m.Image)
	if err != nil {
		return nil, err
	}
	return m.wrap(l), nil
}
