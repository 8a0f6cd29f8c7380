package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// CacheConfigMediaType marks the config of a build cache manifest: an OCI
// image manifest whose layers are the cached layer blobs and whose config
// records which step key each belongs to. Being an ordinary manifest, it
// goes to any registry or OCI layout the way images do.
const CacheConfigMediaType = "application/vnd.strata.cache.config.v1+json"

// cacheConfig is the config blob: the rootfs keeps the store's image
// loading (one diffID per layer) valid; Cache is the builder's record.
type cacheConfig struct {
	RootFS v1.RootFS       `json:"rootfs"`
	Cache  json.RawMessage `json:"strata.cache"`
}

// WriteCacheImage stores a cache manifest whose config carries records
// (the builder's JSON) and whose layers are layers, already in the store.
func (s *Store) WriteCacheImage(ctx context.Context, records any, layers []Layer) (*Image, error) {
	rec, err := json.Marshal(records)
	if err != nil {
		return nil, err
	}
	cfg := cacheConfig{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{}}, Cache: rec}
	descs := make([]v1.Descriptor, 0, len(layers))
	for _, l := range layers {
		size, err := s.statBlob(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("writing cache manifest: layer %s: %w", l.Digest, err)
		}
		mt := l.MediaType
		if mt == "" {
			mt = types.OCILayer
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		descs = append(descs, v1.Descriptor{MediaType: manifestLayerType(mt, true), Size: size, Digest: l.Digest})
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cd, cs, err := s.writeBlobBytes(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("writing cache config: %w", err)
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: CacheConfigMediaType, Size: cs, Digest: cd},
		Layers:        descs,
	}
	rawM, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	d, _, err := s.writeBlobBytes(ctx, rawM)
	if err != nil {
		return nil, fmt.Errorf("writing cache manifest: %w", err)
	}
	return s.Image(d)
}

// CacheSource is a build cache manifest found in a registry or an OCI
// layout. Only its config is read when opened; layer blobs are fetched one
// by one, when the build needs them.
type CacheSource struct {
	Name    string          // the ref or directory, for messages
	Records json.RawMessage // the builder's record
	Layers  []Layer
	fetch   func(ctx context.Context, d v1.Hash) (io.ReadCloser, error)
	exists  func(ctx context.Context, d v1.Hash) (bool, error)
	close   func()

	mu    sync.Mutex
	found map[v1.Hash]error // answers of Available, asked once per blob
}

// Available reports (nil) whether the blob d can be had: the store holds it
// or the cache still serves it. A cache whose manifest outlived a blob (a
// registry GC, a hand-pruned directory) must count as a miss for the step
// that needs it, not fail the build when the layer is fetched.
func (c *CacheSource) Available(ctx context.Context, s *Store, d v1.Hash) error {
	if s.HasBlob(d) {
		return nil
	}
	c.mu.Lock()
	err, asked := c.found[d]
	c.mu.Unlock()
	if asked {
		return err
	}
	ok, err := c.exists(ctx, d)
	if err == nil && !ok {
		err = fmt.Errorf("cache %s lists blob %s but does not have it", c.Name, d)
	} else if err != nil {
		err = fmt.Errorf("cache %s: blob %s: %w", c.Name, d, err)
	}
	c.remember(d, err)
	return err
}

// remember records what Available answers for d from now on.
func (c *CacheSource) remember(d v1.Hash, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.found == nil {
		c.found = map[v1.Hash]error{}
	}
	c.found[d] = err
}

// Close releases the source's connections.
func (c *CacheSource) Close() {
	if c.close != nil {
		c.close()
	}
}

// Fetch puts the blob d of the cache into the store (verified), unless the
// store has it already. A blob the cache cannot give (gone, unreachable,
// damaged) is a *BlobUnavailableError, and Available reports it from then
// on, so that a build tried again treats the steps needing it as misses.
func (c *CacheSource) Fetch(ctx context.Context, s *Store, d v1.Hash) error {
	if s.HasBlob(d) {
		return nil
	}
	err := c.fetchInto(ctx, s, d)
	if err == nil || ctx.Err() != nil {
		return err
	}
	lost := &BlobUnavailableError{Cache: c.Name, Digest: d, Err: err}
	c.remember(d, lost)
	return lost
}

func (c *CacheSource) fetchInto(ctx context.Context, s *Store, d v1.Hash) error {
	rc, err := c.fetch(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, _, err = s.WriteBlob(ctx, rc, &d)
	return err
}

// BlobUnavailableError is a blob an imported cache lists but cannot give.
type BlobUnavailableError struct {
	Cache  string
	Digest v1.Hash
	Err    error
}

func (e *BlobUnavailableError) Error() string {
	return fmt.Sprintf("fetching %s from cache %s: %v", e.Digest, e.Cache, e.Err)
}

func (e *BlobUnavailableError) Unwrap() error { return e.Err }

func parseCache(name string, rawM []byte, config func(d v1.Hash) ([]byte, error)) (*CacheSource, error) {
	m, err := v1.ParseManifest(bytes.NewReader(rawM))
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", name, err)
	}
	if m.Config.MediaType != CacheConfigMediaType {
		return nil, fmt.Errorf("cache %s: not a strata build cache (config media type %q)", name, m.Config.MediaType)
	}
	raw, err := config(m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("cache %s: config: %w", name, err)
	}
	if h, _, err := v1.SHA256(bytes.NewReader(raw)); err != nil || h != m.Config.Digest {
		return nil, fmt.Errorf("cache %s: config does not match its digest", name)
	}
	var cfg cacheConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("cache %s: config: %w", name, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("cache %s: %d layers but %d diff_ids", name, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	c := &CacheSource{Name: name, Records: cfg.Cache}
	for i, l := range m.Layers {
		c.Layers = append(c.Layers, Layer{Digest: l.Digest, DiffID: cfg.RootFS.DiffIDs[i], Size: l.Size, MediaType: l.MediaType})
	}
	return c, nil
}

// OpenRegistryCache reads the cache manifest at ref.
func OpenRegistryCache(ctx context.Context, ref string, o Options) (*CacheSource, error) {
	r, err := o.parseRef(ref)
	if err != nil {
		return nil, err
	}
	opts, done, err := o.remoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		done()
		return nil, fmt.Errorf("cache %s: %w", ref, describeRemoteError(err, r.Context().RegistryStr(), o.certsDir()))
	}
	blob := func(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
		l, err := remote.Layer(r.Context().Digest(d.String()), append(opts, remote.WithContext(ctx))...)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	c, err := parseCache(ref, desc.Manifest, func(d v1.Hash) ([]byte, error) {
		rc, err := blob(ctx, d)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, 64<<20))
	})
	if err != nil {
		done()
		return nil, err
	}
	c.fetch, c.close = blob, done
	c.exists = func(ctx context.Context, d v1.Hash) (bool, error) {
		l, err := remote.Layer(r.Context().Digest(d.String()), append(opts, remote.WithContext(ctx))...)
		if err != nil {
			return false, err
		}
		return partial.Exists(l)
	}
	return c, nil
}

// OpenLayoutCache reads the cache manifest of an OCI layout directory (the
// one tagged "latest", else the only one).
func OpenLayoutCache(dir string) (*CacheSource, error) {
	readBlob := func(d v1.Hash) (io.ReadCloser, error) {
		if !validHash(d) {
			return nil, fmt.Errorf("invalid digest %s", d)
		}
		return os.Open(filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
	}
	idxRaw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(idxRaw))
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	var pick *v1.Descriptor
	for i, m := range idx.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == "latest" || len(idx.Manifests) == 1 {
			pick = &idx.Manifests[i]
		}
	}
	if pick == nil {
		return nil, errors.New("cache " + dir + ": no manifest tagged latest")
	}
	read := func(d v1.Hash) ([]byte, error) {
		rc, err := readBlob(d)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, 64<<20))
	}
	rawM, err := read(pick.Digest)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	c, err := parseCache(dir, rawM, read)
	if err != nil {
		return nil, err
	}
	c.fetch = func(_ context.Context, d v1.Hash) (io.ReadCloser, error) { return readBlob(d) }
	c.exists = func(_ context.Context, d v1.Hash) (bool, error) {
		if !validHash(d) {
			return false, fmt.Errorf("invalid digest %s", d)
		}
		fi, err := os.Stat(filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
		return err == nil && fi.Mode().IsRegular(), nil
	}
	return c, nil
}
