package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/progress"
	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// state is a stage's filesystem and config at some step.
type state struct {
	layers  []layerRef // bottom first
	config  *v1.ConfigFile
	history []v1.History
	key     string       // cache key of the last step (the chain so far)
	records []stepRecord // the steps that made layers or history, for --cache-to
}

// stepRecord is one step of a state as a cache export records it.
type stepRecord struct {
	key     string
	layer   int // index in layers; -1 when the step changed no file
	history v1.History
}

// layerRef is one layer of a state: its snapshot, and its blob once known.
type layerRef struct {
	snap   snapshot.Snapshot
	layer  *registry.Layer
	entry  string        // cache entry to record the blob in once exported; "" for image layers
	export *exportFuture // a background export of snap, when one was started

	// From an imported cache: no snapshot until one is needed.
	remote    *registry.CacheSource
	remoteKey string
	history   v1.History
}

// exportFuture is a layer being exported in the background.
type exportFuture struct {
	done  chan struct{}
	layer registry.Layer
	err   error
}

// lowers returns the snapshots top first, as overlayfs wants them.
func (s *state) lowers() []snapshot.Snapshot {
	out := make([]snapshot.Snapshot, len(s.layers))
	for i, l := range s.layers {
		out[len(s.layers)-1-i] = l.snap
	}
	return out
}

func (s *state) clone() *state {
	c := *s
	c.layers = append([]layerRef(nil), s.layers...)
	c.history = append([]v1.History(nil), s.history...)
	c.records = append([]stepRecord(nil), s.records...)
	return &c
}

// runStage builds one stage.
func (r *run) runStage(ctx context.Context, s *dockerfile.Stage) (*state, error) {
	st, err := r.baseState(ctx, s)
	if err != nil {
		return nil, &StepError{Loc: s.Loc, Text: "FROM", Err: err}
	}
	for i, step := range s.Steps {
		st, err = r.runStep(ctx, s, i, step, st)
		if err != nil {
			return nil, err
		}
	}
	st.config = s.Config
	return st, nil
}

func (r *run) baseState(ctx context.Context, s *dockerfile.Stage) (*state, error) {
	switch {
	case s.BaseStage != nil:
		base, err := r.stageResult(s.BaseStage)
		if err != nil {
			return nil, err
		}
		return base.clone(), nil
	case s.Scratch:
		return &state{key: cache.Key("scratch", s.Platform)}, nil
	}
	img, err := r.image(ctx, s.BaseImage)
	if err != nil {
		return nil, err
	}
	st := &state{key: cache.Key("image", img.Digest.String())}
	st.history = append(st.history, img.Config.History...)
	for _, l := range img.Layers {
		snap, err := r.unpack(ctx, l)
		if err != nil {
			return nil, err
		}
		l := l
		st.layers = append(st.layers, layerRef{snap: snap, layer: &l})
	}
	return st, nil
}

// unpack makes the snapshot of an image layer, shared by every image and
// step that uses the layer.
func (r *run) unpack(ctx context.Context, l registry.Layer) (snapshot.Snapshot, error) {
	key := l.DiffID.Hex
	if snap, ok := r.b.store.SnapshotOf(l.DiffID); ok {
		return snap, nil
	}
	rc, err := r.b.store.OpenLayer(ctx, l)
	if err != nil {
		return snapshot.Snapshot{}, err
	}
	defer rc.Close()
	snap, err := r.b.snaps.Unpack(ctx, key, rc)
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("unpacking layer %s: %w", l.Digest, err)
	}
	return snap, nil
}

// stepKey digests everything that can change what a step produces: the
// chain so far, the instruction, its environment and user, the config it
// leaves behind, and what it reads (sources).
func stepKey(parent string, step *dockerfile.Step, extra ...string) string {
	cfg, _ := json.Marshal(configForKey(step.Config))
	parts := []string{parent, fmt.Sprint(step.Kind), step.Text, strings.Join(step.Env, "\x00"), step.User, string(cfg)}
	return cache.Key(append(parts, extra...)...)
}

// configForKey drops the fields the builder itself fills in.
func configForKey(c *v1.ConfigFile) *v1.ConfigFile {
	if c == nil {
		return nil
	}
	cc := *c
	cc.History = nil
	cc.RootFS = v1.RootFS{}
	cc.Created = v1.Time{}
	return &cc
}

func (r *run) runStep(ctx context.Context, s *dockerfile.Stage, i int, step *dockerfile.Step, st *state) (*state, error) {
	id := r.nextStepID()
	ev := progress.Event{Stage: stageName(s), Step: i + 1, Steps: len(s.Steps), ID: id, Text: step.Text, File: step.Loc.File, Line: step.Loc.Line}
	start := time.Now()
	ev.Kind, ev.Time = progress.Start, start
	if step.Kind != dockerfile.Meta {
		r.o.Progress.Event(ev)
	}

	next, cached, err := r.doStep(ctx, s, id, step, st)
	ev.Kind, ev.Time, ev.Duration, ev.Cached, ev.Err = progress.Done, time.Now(), time.Since(start), cached, err
	if step.Kind != dockerfile.Meta {
		r.o.Progress.Event(ev)
	}
	if err != nil {
		return nil, &StepError{Loc: step.Loc, Text: step.Text, Err: err}
	}
	return next, nil
}

// doStep runs or reuses one step and returns the state after it.
func (r *run) doStep(ctx context.Context, s *dockerfile.Stage, id int, step *dockerfile.Step, st *state) (*state, bool, error) {
	next := st.clone()
	next.config = step.Config
	if step.Kind == dockerfile.Meta {
		next.key = stepKey(st.key, step)
		next.history = append(next.history, v1.History{
			Created:    r.lastCreated(st),
			CreatedBy:  step.Text,
			Comment:    "buildkit.dockerfile.v0",
			EmptyLayer: true,
		})
		return next, false, nil
	}

	extra, err := r.inputKey(ctx, step)
	if err != nil {
		return nil, false, err
	}
	// The chain goes on from key; the result is stored under layerKey,
	// which for COPY --link leaves out the parent: the layer does not
	// depend on it, so a new base reuses it.
	key := stepKey(st.key, step, extra...)
	layerKey := key
	if step.Kind == dockerfile.Copy && step.Copy.Link {
		layerKey = cache.Key(append([]string{"link", step.Text}, extra...)...)
	}
	noCache := r.noCache(s)
	if noCache {
		// A step run again on purpose gets a key of its own, so neither it
		// nor anything built on it can be mistaken for the cached result;
		// identical steps of this build still share it.
		key = cache.Key(key, "no-cache", r.nonce)
		layerKey = cache.Key(layerKey, "no-cache", r.nonce)
	} else if e, ok, err := r.b.cache.Get(layerKey); err != nil {
		return nil, false, err
	} else if ok && r.usable(e) {
		next.key = key
		r.apply(next, e)
		return next, true, nil
	} else if rs, ok := r.remoteSteps[layerKey]; ok && r.remoteAvailable(ctx, rs) {
		// From --cache-from: nothing is fetched unless a later step or
		// the image needs the layer.
		next.key = key
		r.applyRemote(next, layerKey, rs)
		return next, true, nil
	}
	next.key = key

	// Identical steps of this build (same key) run once; the others wait
	// for that result.
	ran := false
	v, err, _ := r.flight.Do(layerKey, func() (any, error) {
		if !noCache {
			// Another build may have made it while this one waited.
			if e, ok, err := r.b.cache.Get(layerKey); err == nil && ok && r.usable(e) {
				return e, nil
			}
		}
		ran = true
		base := st
		if step.Kind == dockerfile.Copy && step.Copy.Link {
			base = &state{} // the copy lands in an empty tree
		}
		return r.execStep(ctx, s, id, step, base, layerKey)
	})
	if err != nil {
		return nil, false, err
	}
	e := v.(cache.Entry)
	r.apply(next, e)
	if ran && r.final[s] && !e.Empty {
		r.exportInBackground(&next.layers[len(next.layers)-1], e)
	}
	return next, !ran, nil
}

// exportInBackground starts compressing a new layer of the image while the
// build goes on; commitImage waits for it.
func (r *run) exportInBackground(ref *layerRef, e cache.Entry) {
	if ref.layer != nil || ref.export != nil {
		return
	}
	f := &exportFuture{done: make(chan struct{})}
	ref.export = f
	local := *ref
	local.export = nil
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		defer close(f.done)
		f.layer, f.err = r.exportLayer(r.bgctx, &local)
	}()
}

// execStep runs a step over st and records its result under key.
func (r *run) execStep(ctx context.Context, s *dockerfile.Stage, id int, step *dockerfile.Step, st *state, key string) (cache.Entry, error) {
	if err := r.materialize(ctx, st); err != nil {
		return cache.Entry{}, err
	}
	a, err := r.b.snaps.Prepare(ctx)
	if err != nil {
		return cache.Entry{}, err
	}
	committed := false
	defer func() {
		if !committed {
			r.b.snaps.Abort(a)
		}
	}()
	switch step.Kind {
	case dockerfile.Run:
		err = r.execRun(ctx, s, id, step, st, a)
	case dockerfile.Copy:
		err = r.execCopy(ctx, step, st, a)
	case dockerfile.Workdir:
		err = r.execWorkdir(ctx, step, st, a)
	default:
		err = fmt.Errorf("unknown step kind %d", step.Kind)
	}
	if err != nil {
		return cache.Entry{}, err
	}

	e := cache.Entry{Key: key, History: v1.History{
		Created:   r.now(),
		CreatedBy: step.Text,
		Comment:   "buildkit.dockerfile.v0",
	}}
	empty, err := isEmptyDir(a.Dir)
	if err != nil {
		return cache.Entry{}, err
	}
	if empty {
		e.Empty = true
		e.History.EmptyLayer = true
	} else {
		if _, err := r.b.snaps.Commit(ctx, a, key); err != nil {
			return cache.Entry{}, err
		}
		committed = true
		e.Snapshot = key
		if step.Kind == dockerfile.Copy {
			r.recordCopyHint(step, key) // a hint only: failures are ignored
		}
	}
	if err := r.b.cache.Put(e); err != nil {
		return cache.Entry{}, err
	}
	return e, nil
}

// noCache reports whether the steps of s must run even when cached.
func (r *run) noCache(s *dockerfile.Stage) bool {
	if r.o.NoCache {
		return true
	}
	for _, name := range r.o.NoCacheFilter {
		if strings.EqualFold(name, s.Name) || name == fmt.Sprint(s.Index) {
			return true
		}
	}
	return false
}

// usable reports whether a cache entry's snapshot (and blob, if recorded)
// still exist; anything else is a miss, never a failure.
func (r *run) usable(e cache.Entry) bool {
	if e.Empty {
		return true
	}
	if _, ok := r.b.snaps.Get(e.Snapshot); !ok {
		return false
	}
	return true
}

// apply adds a step's result to a state.
func (r *run) apply(st *state, e cache.Entry) {
	h := e.History
	if r.o.Epoch != nil {
		h.Created = r.now() // cached by a build without SOURCE_DATE_EPOCH
	}
	st.history = append(st.history, h)
	if e.Empty {
		st.records = append(st.records, stepRecord{key: e.Key, layer: -1, history: h})
		return
	}
	st.records = append(st.records, stepRecord{key: e.Key, layer: len(st.layers), history: h})
	snap, _ := r.b.snaps.Get(e.Snapshot)
	ref := layerRef{snap: snap, entry: e.Key}
	if cl := e.LayerFor(r.epoch()); cl != nil {
		if l, err := layerFromCache(*cl); err == nil && r.b.store.HasBlob(l.Digest) {
			ref.layer = &l
		}
	}
	st.layers = append(st.layers, ref)
}

func (r *run) now() v1.Time {
	if r.o.Epoch != nil {
		return v1.Time{Time: r.o.Epoch.UTC()}
	}
	return v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
}

// lastCreated gives metadata-only steps the time of the step before them,
// so that a rebuild from cache reproduces the same config.
func (r *run) lastCreated(st *state) v1.Time {
	if r.o.Epoch != nil {
		return v1.Time{Time: r.o.Epoch.UTC()}
	}
	if n := len(st.history); n > 0 {
		return st.history[n-1].Created
	}
	return v1.Time{}
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && len(names) == 0 {
		return true, nil
	}
	return len(names) == 0, nil
}
