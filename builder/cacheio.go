package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/pgzip"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/progress"
	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// CacheSpec is a --cache-from or --cache-to: type=registry,ref=REF or
// type=local,src|dest=DIR, with mode=min|max for exports.
type CacheSpec struct {
	Type string // "registry" or "local"
	Ref  string
	Dir  string
	Mode string // "min" (default) or "max"
}

// ParseCacheSpec reads a --cache-from/--cache-to value; a bare REF means
// type=registry,ref=REF as in docker build.
func ParseCacheSpec(s string, export bool) (CacheSpec, error) {
	if !strings.Contains(s, "=") {
		return CacheSpec{Type: "registry", Ref: s, Mode: "min"}, nil
	}
	c := CacheSpec{Mode: "min"}
	for _, f := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return c, fmt.Errorf("invalid cache option %q: want key=value", f)
		}
		switch k {
		case "type":
			c.Type = v
		case "ref":
			c.Ref = v
		case "src":
			c.Dir = v
		case "dest":
			c.Dir = v
		case "mode":
			if v != "min" && v != "max" {
				return c, fmt.Errorf("invalid cache mode %q: want min or max", v)
			}
			c.Mode = v
		case "compression", "ignore-error", "image-manifest", "oci-mediatypes":
			// Accepted for compatibility; strata always writes an OCI
			// image manifest with gzip layers.
		default:
			return c, fmt.Errorf("unknown cache option %q", k)
		}
	}
	switch c.Type {
	case "registry":
		if c.Ref == "" {
			return c, fmt.Errorf("cache type=registry needs ref=REF")
		}
	case "local":
		if c.Dir == "" {
			if export {
				return c, fmt.Errorf("cache type=local needs dest=DIR")
			}
			return c, fmt.Errorf("cache type=local needs src=DIR")
		}
	default:
		return c, fmt.Errorf("unknown cache type %q: want registry or local", c.Type)
	}
	return c, nil
}

func (c CacheSpec) String() string {
	if c.Type == "local" {
		return "local:" + c.Dir
	}
	return c.Ref
}

// cacheRecords is what a cache manifest's config holds.
type cacheRecords struct {
	Version int           `json:"version"`
	Steps   []cacheRecord `json:"steps"`
	Mounts  []mountRecord `json:"mounts,omitempty"`
}

// cacheRecord is one step result: its key and, unless it changed no file,
// the layer (index into the manifest's layers).
type cacheRecord struct {
	Key     string     `json:"key"`
	Layer   int        `json:"layer"` // -1: empty
	History v1.History `json:"history"`
}

// mountRecord is a RUN --mount=type=cache directory (by its digest name).
type mountRecord struct {
	Name  string `json:"name"`
	Layer int    `json:"layer"`
}

// remoteStep is a step result found in an imported cache.
type remoteStep struct {
	src     *registry.CacheSource
	layer   *registry.Layer // nil: empty
	history v1.History
}

// importCaches reads every --cache-from; one that cannot be read is
// reported and skipped, as BuildKit does.
func (r *run) importCaches(ctx context.Context) {
	r.remoteSteps = map[string]remoteStep{}
	r.remoteMounts = map[string]remoteStep{}
	for _, spec := range r.o.CacheFrom {
		var src *registry.CacheSource
		var err error
		if spec.Type == "local" {
			src, err = registry.OpenLayoutCache(spec.Dir)
		} else {
			src, err = registry.OpenRegistryCache(ctx, spec.Ref, r.o.Registry)
		}
		if err == nil {
			err = r.addCache(src)
		}
		if err != nil {
			r.info(fmt.Sprintf("WARNING: importing cache from %s: %v", spec, err))
			continue
		}
		r.cacheSources = append(r.cacheSources, src)
	}
}

func (r *run) addCache(src *registry.CacheSource) error {
	var recs cacheRecords
	if err := json.Unmarshal(src.Records, &recs); err != nil {
		return err
	}
	layer := func(i int) (*registry.Layer, error) {
		if i < 0 {
			return nil, nil
		}
		if i >= len(src.Layers) {
			return nil, fmt.Errorf("record names layer %d of %d", i, len(src.Layers))
		}
		l := src.Layers[i]
		return &l, nil
	}
	for _, s := range recs.Steps {
		l, err := layer(s.Layer)
		if err != nil {
			return err
		}
		if _, seen := r.remoteSteps[s.Key]; !seen {
			r.remoteSteps[s.Key] = remoteStep{src: src, layer: l, history: s.History}
		}
	}
	for _, m := range recs.Mounts {
		l, err := layer(m.Layer)
		if err != nil || l == nil {
			continue
		}
		if _, seen := r.remoteMounts[m.Name]; !seen {
			r.remoteMounts[m.Name] = remoteStep{src: src, layer: l}
		}
	}
	return nil
}

func (r *run) info(msg string) {
	r.o.Progress.Event(progress.Event{Kind: progress.Info, Time: time.Now(), Text: msg})
}

// remoteAvailable reports whether an imported step result can be used: an
// empty one always, one with a layer only while its cache still has the
// blob. One that cannot is a miss (the step runs), with a warning.
func (r *run) remoteAvailable(ctx context.Context, rs remoteStep) bool {
	if rs.layer == nil {
		return true
	}
	err := rs.src.Available(ctx, r.b.store, rs.layer.Digest)
	if err != nil && ctx.Err() == nil {
		r.info(fmt.Sprintf("WARNING: %v; running the step", err))
	}
	return err == nil
}

// applyRemote adds an imported step result to a state without fetching
// anything: the layer's blob and snapshot come only when needed.
func (r *run) applyRemote(st *state, key string, rs remoteStep) {
	st.history = append(st.history, rs.history)
	if rs.layer == nil {
		st.records = append(st.records, stepRecord{key: key, layer: -1, history: rs.history})
		return
	}
	l := *rs.layer
	st.layers = append(st.layers, layerRef{layer: &l, remote: rs.src, remoteKey: key, history: rs.history})
	st.records = append(st.records, stepRecord{key: key, layer: len(st.layers) - 1, history: rs.history})
}

// materialize gives every layer of st a snapshot, fetching and unpacking
// those that came from an imported cache; each then becomes a local cache
// entry, so later builds on this root find it without the import.
func (r *run) materialize(ctx context.Context, st *state) error {
	for i := range st.layers {
		ref := &st.layers[i]
		if ref.snap.Dir != "" {
			continue
		}
		if ref.layer == nil || ref.remote == nil {
			return fmt.Errorf("layer %d has neither snapshot nor source", i)
		}
		if err := ref.remote.Fetch(ctx, r.b.store, ref.layer.Digest); err != nil {
			return err
		}
		snap, err := r.unpack(ctx, *ref.layer)
		if err != nil {
			return err
		}
		ref.snap = snap
		l := *ref.layer
		e := cache.Entry{Key: ref.remoteKey, Snapshot: snap.Key, History: ref.history,
			Layer: &cache.Layer{Digest: l.Digest.String(), DiffID: l.DiffID.String(), Size: l.Size, MediaType: string(l.MediaType)}}
		if err := r.b.cache.Put(e); err != nil {
			return err
		}
	}
	return nil
}

// exportCaches writes every --cache-to: mode=min records the steps of the
// image's own chain, mode=max those of every stage built, and the cache
// mounts the build used.
func (r *run) exportCaches(ctx context.Context, final *state) error {
	for _, spec := range r.o.CacheTo {
		if err := r.exportCache(ctx, spec, final); err != nil {
			return fmt.Errorf("exporting cache to %s: %w", spec, err)
		}
	}
	return nil
}

func (r *run) exportCache(ctx context.Context, spec CacheSpec, final *state) error {
	states := []*state{final}
	if spec.Mode == "max" {
		r.mu.Lock()
		for _, st := range r.results {
			states = append(states, st)
		}
		r.mu.Unlock()
	}
	recs := cacheRecords{Version: 1}
	var layers []registry.Layer
	index := map[v1.Hash]int{}
	addLayer := func(l registry.Layer) int {
		if i, ok := index[l.Digest]; ok {
			return i
		}
		index[l.Digest] = len(layers)
		layers = append(layers, l)
		return len(layers) - 1
	}
	seen := map[string]bool{}
	for _, st := range states {
		for _, rec := range st.records {
			if seen[rec.key] {
				continue
			}
			seen[rec.key] = true
			cr := cacheRecord{Key: rec.key, Layer: -1, History: rec.history}
			if rec.layer >= 0 {
				l, err := r.exportLayer(ctx, &st.layers[rec.layer])
				if err != nil {
					return err
				}
				cr.Layer = addLayer(l)
			}
			recs.Steps = append(recs.Steps, cr)
		}
	}
	if spec.Mode == "max" {
		for _, name := range r.usedMounts() {
			l, err := r.exportMount(ctx, name)
			if err != nil {
				return err
			}
			recs.Mounts = append(recs.Mounts, mountRecord{Name: name, Layer: addLayer(l)})
		}
	}
	layers, err := r.b.store.CompressLayers(ctx, layers, r.o.Compression, r.o.CompressionLvl)
	if err != nil {
		return err
	}
	img, err := r.b.store.WriteCacheImage(ctx, recs, layers)
	if err != nil {
		return err
	}
	if spec.Type == "local" {
		return registry.WriteOCILayout(r.b.store.V1(img), spec.Dir, []string{"latest"})
	}
	return registry.Push(ctx, r.b.store.V1(img), spec.Ref, r.o.Registry)
}

// usedMounts lists the cache mount directories this build used.
func (r *run) usedMounts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.mounts))
	for name := range r.mounts {
		out = append(out, name)
	}
	return out
}

// exportMount makes a layer blob of a cache mount directory's content.
func (r *run) exportMount(ctx context.Context, name string) (registry.Layer, error) {
	dir := filepath.Join(r.cacheMountDir(), name)
	return r.b.store.WriteLayer(ctx, func(w io.Writer) error {
		_, err := snapshot.Diff(ctx, dir, w, snapshot.DiffOptions{})
		return err
	}, registry.Gzip, 0)
}

// fillMount fills a new cache mount directory from an imported cache.
func (r *run) fillMount(ctx context.Context, name, dir string) error {
	rs, ok := r.remoteMounts[name]
	if !ok {
		return nil
	}
	if err := rs.src.Fetch(ctx, r.b.store, rs.layer.Digest); err != nil {
		return err
	}
	rc, err := r.b.store.OpenBlob(rs.layer.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	zr, err := pgzip.NewReader(rc)
	if err != nil {
		return err
	}
	defer zr.Close()
	return snapshot.Apply(ctx, dir, zr, snapshot.ApplyOptions{Mode: snapshot.ApplyFlatten})
}

// closeCaches releases imported caches' connections.
func (r *run) closeCaches() {
	for _, c := range r.cacheSources {
		c.Close()
	}
}
