// Package builder turns a planned Dockerfile into an image: it runs the
// stages as a graph (independent stages at the same time), each step in the
// sandbox over overlay snapshots, reuses cached steps, and commits the final
// stage's layers and config into the local store.
package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/copier"
	"github.com/strata-build/strata/dag"
	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/progress"
	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// Options describe one build.
type Options struct {
	Root           string // state directory (--root)
	ContextDir     string
	DockerfilePath string // may lie outside the context
	BuildArgs      map[string]string
	Target         string
	Platform       string // linux/amd64 when empty
	NoCache        bool
	NoCacheFilter  []string             // stages (by name or index) whose steps always run
	Secrets        map[string]Secret    // --secret, by id
	SSH            map[string]string    // --ssh: id -> agent socket
	CacheFrom      []CacheSpec          // --cache-from
	CacheTo        []CacheSpec          // --cache-to
	Compression    registry.Compression // of new layers: gzip (default) or zstd
	CompressionLvl int                  // 0 = the compressor's default
	Jobs           int                  // concurrent stages; NumCPU when < 1
	Epoch          *time.Time           // SOURCE_DATE_EPOCH
	Registry       registry.Options
	Progress       progress.Sink
}

// Builder runs builds on one state root.
type Builder struct {
	store *registry.Store
	snaps *snapshot.Store
	cache cache.Store
	root  string
}

// New opens the state under root.
func New(root string) (*Builder, error) {
	// Mount options and helper processes need paths that do not depend
	// on the working directory.
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	// Overlay mount options are comma separated: a comma in a snapshot
	// path would split an option.
	if strings.ContainsAny(root, ",:") {
		return nil, fmt.Errorf("state directory %q must not contain ',' or ':'", root)
	}
	store, err := registry.OpenStore(root)
	if err != nil {
		return nil, err
	}
	snaps, err := snapshot.Open(filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, err
	}
	c, err := cache.OpenLocal(filepath.Join(root, "cache"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, err
	}
	return &Builder{store: store, snaps: snaps, cache: c, root: root}, nil
}

// Store is the local image store the builder writes into.
func (b *Builder) Store() *registry.Store { return b.store }

// Snapshots is the snapshot store the builder uses.
func (b *Builder) Snapshots() *snapshot.Store { return b.snaps }

// Build runs a build and returns the image of the target stage, written to
// the local store (untagged).
func (b *Builder) Build(ctx context.Context, o Options) (*registry.Image, error) {
	if o.Platform == "" {
		o.Platform = "linux/" + runtime.GOARCH
	}
	if o.Progress == nil {
		o.Progress = progress.Discard{}
	}
	if o.Jobs < 1 {
		o.Jobs = runtime.NumCPU()
	}
	data, err := os.ReadFile(o.DockerfilePath)
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	name := filepath.Base(o.DockerfilePath)
	df, err := dockerfile.Parse(name, data)
	if err != nil {
		return nil, err
	}
	bc, err := newBuildContext(o.ContextDir, o.DockerfilePath)
	if err != nil {
		return nil, err
	}
	r := &run{b: b, o: o, ctx: bc, images: map[string]*registry.Image{}, results: map[*dockerfile.Stage]*state{},
		nonce: newNonce(), remotes: map[*dockerfile.Step]*remoteSource{}}
	if sc, err := cache.OpenStatCache(filepath.Join(b.root, "cache", "stat"), bc.dir); err == nil {
		r.digests = sc
		// Entries recorded are right whether or not the build succeeds.
		defer sc.Save()
	}
	// BuildKit's checks run on every build: warnings are reported, and
	// fail the build only under "# check=error=true".
	warnings, err := dockerfile.Lint(ctx, name, data, dockerfile.LintOptions{
		BuildArgs: o.BuildArgs, Target: o.Target, Platform: o.Platform, Resolver: r, Ignore: bc.ignore})
	var violation *dockerfile.LintViolationError
	if err != nil && !errors.As(err, &violation) {
		// Plan reports Dockerfile errors with more context; a lint that
		// stopped early is not the build's failure.
		violation = nil
	}
	for _, w := range warnings {
		o.Progress.Event(progress.Event{Kind: progress.Info, Time: time.Now(), Text: "WARNING: " + w.String()})
	}
	if violation != nil {
		return nil, violation
	}
	plan, err := df.Plan(ctx, dockerfile.Options{
		BuildArgs: o.BuildArgs,
		Target:    o.Target,
		Platform:  o.Platform,
		Resolver:  r,
	})
	if err != nil {
		return nil, err
	}
	// The target stage and the stages it is FROM: their new layers go into
	// the image, so they are compressed in the background as soon as they
	// are committed, while later steps run.
	r.final = map[*dockerfile.Stage]bool{}
	for s := plan.Target; s != nil; s = s.BaseStage {
		r.final[s] = true
	}
	r.bgctx = ctx
	defer r.bg.Wait()
	r.mounts = map[string]bool{}
	r.importCaches(ctx)
	defer r.closeCaches()
	var g dag.Graph[*dockerfile.Stage]
	for _, s := range plan.Stages {
		g.Add(s, s.Deps...)
	}
	// An imported cache can lose a blob after the lookup found it (a
	// registry GC between the two). The build then runs again: every step
	// done so far is in the local cache, and the steps that needed the lost
	// blob are misses this time. Each pass loses a blob more, so the number
	// of passes is bounded by the imported layers; a few is plenty.
	const passes = 4
	for pass := 1; ; pass++ {
		img, err := r.buildPass(ctx, &g, plan.Target)
		var lost *registry.BlobUnavailableError
		if err == nil || pass == passes || !errors.As(err, &lost) || ctx.Err() != nil {
			return img, err
		}
		r.info(fmt.Sprintf("WARNING: %v; building again without it", lost))
		r.mu.Lock()
		r.results = map[*dockerfile.Stage]*state{}
		r.mu.Unlock()
	}
}

// buildPass runs the stage graph, then writes the image and the caches.
func (r *run) buildPass(ctx context.Context, g *dag.Graph[*dockerfile.Stage], target *dockerfile.Stage) (*registry.Image, error) {
	err := g.Run(ctx, r.o.Jobs, func(ctx context.Context, s *dockerfile.Stage) error {
		st, err := r.runStage(ctx, s)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.results[s] = st
		r.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	img, err := r.commitImage(ctx, r.results[target])
	if err != nil {
		return nil, err
	}
	if err := r.exportCaches(ctx, r.results[target]); err != nil {
		return nil, err
	}
	return img, nil
}

// Check lints the Dockerfile of o without building (build --check): the
// warnings, and a *dockerfile.LintViolationError or a Dockerfile error when
// the build would fail before running anything.
func (b *Builder) Check(ctx context.Context, o Options) ([]dockerfile.Warning, error) {
	if o.Platform == "" {
		o.Platform = "linux/" + runtime.GOARCH
	}
	data, err := os.ReadFile(o.DockerfilePath)
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	bc, err := newBuildContext(o.ContextDir, o.DockerfilePath)
	if err != nil {
		return nil, err
	}
	r := &run{b: b, o: o, ctx: bc, images: map[string]*registry.Image{}, results: map[*dockerfile.Stage]*state{}}
	return dockerfile.Lint(ctx, filepath.Base(o.DockerfilePath), data, dockerfile.LintOptions{
		BuildArgs: o.BuildArgs, Target: o.Target, Platform: o.Platform, Resolver: r, Ignore: bc.ignore})
}

// run is the state of one build.
type run struct {
	b   *Builder
	o   Options
	ctx *buildContext

	mu      sync.Mutex
	images  map[string]*registry.Image // resolved external images by ref as written
	results map[*dockerfile.Stage]*state
	stepID  int

	remotes map[*dockerfile.Step]*remoteSource // ADD URL/git sources fetched
	digests copier.FileDigests                 // stat cache of the context; nil without one

	final map[*dockerfile.Stage]bool // stages whose layers are in the image
	bgctx context.Context            // outlives the stage graph's context
	bg    sync.WaitGroup             // background layer exports

	remoteSteps  map[string]remoteStep // --cache-from results by step key
	remoteMounts map[string]remoteStep // --cache-from cache mounts by name
	cacheSources []*registry.CacheSource
	mounts       map[string]bool // cache mount dirs used (for mode=max)

	flight singleflight.Group // identical steps run once per build
	nonce  string             // per build: keys of steps run under --no-cache
}

// ResolveImageConfig implements dockerfile.ImageResolver: it makes the image
// available locally (pulling when needed) and returns its config.
func (r *run) ResolveImageConfig(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	img, err := r.image(ctx, ref)
	if err != nil {
		return nil, err
	}
	return img.Config, nil
}

func (r *run) image(ctx context.Context, ref string) (*registry.Image, error) {
	r.mu.Lock()
	img, ok := r.images[ref]
	r.mu.Unlock()
	if ok {
		return img, nil
	}
	img, err := r.b.store.Resolve(ctx, ref, r.o.Registry)
	if err != nil {
		return nil, fmt.Errorf("resolving image %s: %w", ref, err)
	}
	r.mu.Lock()
	r.images[ref] = img
	r.mu.Unlock()
	return img, nil
}

func (r *run) stageResult(s *dockerfile.Stage) (*state, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.results[s]
	if !ok {
		return nil, fmt.Errorf("stage %s has not been built", stageName(s))
	}
	return st, nil
}

func (r *run) nextStepID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stepID++
	return r.stepID
}

func newNonce() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func stageName(s *dockerfile.Stage) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("stage-%d", s.Index)
}

// StepError is a failed step, tied to its Dockerfile line.
type StepError struct {
	Loc  dockerfile.Location
	Text string
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %v", e.Loc.File, e.Loc.Line, e.Text, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// ExitError is a RUN command that exited non-zero.
type ExitError struct {
	Code int
	Tail []string // last lines of output
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("did not complete successfully: exit code: %d", e.Code)
}

// IsExit reports whether err is a failing RUN command and returns it.
func IsExit(err error) (*ExitError, bool) {
	var e *ExitError
	ok := errors.As(err, &e)
	return e, ok
}
