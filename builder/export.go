package builder

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/registry"
)

// commitImage exports the layers of st that have no blob yet and writes the
// image config and manifest into the store.
func (r *run) commitImage(ctx context.Context, st *state) (*registry.Image, error) {
	layers := make([]registry.Layer, 0, len(st.layers))
	for i := range st.layers {
		l, err := r.exportLayer(ctx, &st.layers[i])
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	cfg := st.config.DeepCopy()
	cfg.History = st.history
	cfg.Created = r.lastCreated(st)
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	img, err := r.b.store.WriteImage(ctx, cfg, layers, true)
	if err != nil {
		return nil, fmt.Errorf("writing image: %w", err)
	}
	return img, nil
}

// exportLayer returns a layer of the image: its blob when it has one, or
// else a lazy layer of its snapshot (hashed, not compressed: see
// registry/diffs.go), recorded in the step's cache entry so that a rebuild
// does not hash it again.
func (r *run) exportLayer(ctx context.Context, ref *layerRef) (registry.Layer, error) {
	if ref.layer != nil {
		if ref.remote != nil {
			// Only what the image (or a cache export) needs is fetched.
			if err := ref.remote.Fetch(ctx, r.b.store, ref.layer.Digest); err != nil {
				return registry.Layer{}, err
			}
		}
		return *ref.layer, nil
	}
	if f := ref.export; f != nil {
		select {
		case <-f.done:
		case <-ctx.Done():
			return registry.Layer{}, ctx.Err()
		}
		if f.err == nil {
			ref.layer = &f.layer
			return f.layer, nil
		}
		// A failed background export is tried again here, with its error
		// reported if it fails again.
	}
	l, err := r.b.store.RecordDiff(ctx, ref.snap, r.o.Epoch)
	if err != nil {
		return registry.Layer{}, fmt.Errorf("exporting layer: %w", err)
	}
	ref.layer = &l
	// A tar with clamped mtimes is another layer, remembered per epoch.
	if ref.entry != "" {
		e, ok, err := r.b.cache.Get(ref.entry)
		if err == nil && ok {
			e.SetLayerFor(r.epoch(), cache.Layer{Digest: l.Digest.String(), DiffID: l.DiffID.String(), Size: l.Size, MediaType: string(l.MediaType)})
			if err := r.b.cache.Put(e); err != nil {
				return registry.Layer{}, err
			}
		}
	}
	return l, nil
}

func layerFromCache(c cache.Layer) (registry.Layer, error) {
	d, err := v1.NewHash(c.Digest)
	if err != nil {
		return registry.Layer{}, err
	}
	diffID, err := v1.NewHash(c.DiffID)
	if err != nil {
		return registry.Layer{}, err
	}
	return registry.Layer{Digest: d, DiffID: diffID, Size: c.Size, MediaType: types.MediaType(c.MediaType)}, nil
}

// epoch is SOURCE_DATE_EPOCH in unix seconds, nil when unset.
func (r *run) epoch() *int64 {
	if r.o.Epoch == nil {
		return nil
	}
	e := r.o.Epoch.Unix()
	return &e
}
