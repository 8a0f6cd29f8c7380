package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/strata-build/strata/builder"
	"github.com/strata-build/strata/registry"
)

func runBuild(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("build", pflag.ContinueOnError)
	var (
		file      = fs.StringP("file", "f", "", "Dockerfile path (default CONTEXT/Dockerfile)")
		tags      = fs.StringArrayP("tag", "t", nil, "name the image (repeatable)")
		push      = fs.Bool("push", false, "push the tags to their registries")
		buildArgs = fs.StringArray("build-arg", nil, "set a build argument K=V (K alone takes it from the environment)")
		target    = fs.String("target", "", "stage to build")
		noCache   = fs.Bool("no-cache", false, "do not use the build cache")
		secrets   = fs.StringArray("secret", nil, "expose a secret to RUN --mount=type=secret: id=ID[,src=FILE|env=VAR]")
		sshFlags  = fs.StringArray("ssh", nil, "forward an SSH agent to RUN --mount=type=ssh: default|ID[=SOCKET]")
		cacheFrom = fs.StringArray("cache-from", nil, "import build cache: type=registry,ref=REF | type=local,src=DIR | REF (repeatable)")
		cacheTo   = fs.StringArray("cache-to", nil, "export build cache: type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR[,mode=...]")
		compress  = fs.String("compression", "gzip", "compression of new layers: gzip or zstd")
		level     = fs.Int("compression-level", 0, "compression level (gzip 1-9, zstd 1-22; 0 = default)")
		check     = fs.Bool("check", false, "check the Dockerfile with the build checks instead of building")
		noCacheF  = fs.StringArray("no-cache-filter", nil, "do not use the build cache for this stage (repeatable)")
		prog      = fs.String("progress", "auto", "progress output: auto, tty, plain, json")
		outputs   = fs.StringArrayP("output", "o", nil, "type=oci,dest=DIR | type=docker,dest=FILE.tar | type=local,dest=DIR")
		iidfile   = fs.String("iidfile", "", "write the image digest to this file")
		platform  = fs.String("platform", "", "target platform (linux/amd64 by default)")
		jobs      = fs.Int("jobs", 0, "stages run at once (default: number of CPUs)")
		insecure  = fs.StringArray("insecure-registry", nil, "use plain HTTP for this HOST:PORT")
		quiet     = fs.BoolP("quiet", "q", false, "print only the image digest")
		mirrors   = fs.StringArray("registry-mirror", nil, "pull REGISTRY's images from MIRROR first (REGISTRY=MIRROR, e.g. docker.io=127.0.0.1:5000)")
	)
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("exactly one build context is required")
	}
	contextDir := fs.Arg(0)
	dockerfile := *file
	if dockerfile == "" {
		dockerfile = filepath.Join(contextDir, "Dockerfile")
	}
	ba, err := parseBuildArgs(*buildArgs)
	if err != nil {
		return usageError{err}
	}
	var outs []builder.Output
	for _, o := range *outputs {
		out, err := builder.ParseOutput(o)
		if err != nil {
			return usageError{err}
		}
		outs = append(outs, out)
	}
	mirrorMap, err := parseMirrors(*mirrors)
	if err != nil {
		return usageError{err}
	}
	secretMap := map[string]builder.Secret{}
	for _, f := range *secrets {
		id, sec, err := builder.ParseSecret(f)
		if err != nil {
			return usageError{err}
		}
		secretMap[id] = sec
	}
	sshMap := map[string]string{}
	for _, f := range *sshFlags {
		id, sock, err := builder.ParseSSH(f)
		if err != nil {
			return usageError{err}
		}
		sshMap[id] = sock
	}
	var cacheFromSpecs, cacheToSpecs []builder.CacheSpec
	for _, f := range *cacheFrom {
		c, err := builder.ParseCacheSpec(f, false)
		if err != nil {
			return usagef("--cache-from %s: %v", f, err)
		}
		cacheFromSpecs = append(cacheFromSpecs, c)
	}
	for _, f := range *cacheTo {
		c, err := builder.ParseCacheSpec(f, true)
		if err != nil {
			return usagef("--cache-to %s: %v", f, err)
		}
		cacheToSpecs = append(cacheToSpecs, c)
	}
	if err := checkCompression(*compress, *level); err != nil {
		return err
	}
	if *push && len(*tags) == 0 {
		return usagef("--push needs at least one -t")
	}
	for _, t := range *tags {
		if err := registry.ValidateRef(t); err != nil {
			return usagef("invalid tag %q: %v", t, err)
		}
	}
	defer holdStore(ctx, g)()
	sink, err := newRenderer(*prog, os.Stderr, *quiet)
	if err != nil {
		return usageError{err}
	}
	defer sink.Close()

	b, err := builder.New(g.root)
	if err != nil {
		return err
	}
	o := builder.Options{
		Root:           g.root,
		ContextDir:     contextDir,
		DockerfilePath: dockerfile,
		BuildArgs:      ba,
		Target:         *target,
		Platform:       *platform,
		NoCache:        *noCache,
		NoCacheFilter:  *noCacheF,
		Secrets:        secretMap,
		SSH:            sshMap,
		CacheFrom:      cacheFromSpecs,
		CacheTo:        cacheToSpecs,
		Compression:    registry.Compression(*compress),
		CompressionLvl: *level,
		Jobs:           *jobs,
		Registry:       registry.Options{Insecure: *insecure, Mirrors: mirrorMap},
		Progress:       sink,
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return usagef("SOURCE_DATE_EPOCH=%q is not a number of seconds", e)
		}
		t := time.Unix(sec, 0).UTC()
		o.Epoch = &t
	}
	if *check {
		return runCheck(ctx, b, o)
	}
	img, err := b.Build(ctx, o)
	if err != nil {
		return err
	}
	// Local images keep their new layers uncompressed in snapshots. An
	// image that leaves the store as an image (push, oci, docker) is
	// compressed as asked, and then that is the image the build reports
	// and tags, so that --iidfile, the tags and the pushed or exported
	// manifest agree. A filesystem output (local, tar) needs no blobs.
	if *push || slices.ContainsFunc(outs, builder.Output.IsImage) {
		if img, err = b.Store().Compressed(ctx, img, o.Compression, o.CompressionLvl); err != nil {
			return err
		}
	}
	for _, out := range outs {
		if err := b.Export(ctx, img, out, *tags); err != nil {
			return fmt.Errorf("output %s: %w", out.Type, err)
		}
	}
	for _, t := range *tags {
		if err := b.Store().Tag(t, img); err != nil {
			return err
		}
	}
	if *push {
		for _, t := range *tags {
			sink.Info(fmt.Sprintf("pushing %s", t))
			if err := registry.Push(ctx, b.Store().V1(img), t, o.Registry); err != nil {
				return err // names the destination
			}
			sink.Info(fmt.Sprintf("pushed %s@%s", t, img.Digest))
		}
	}
	if *iidfile != "" {
		if err := os.WriteFile(*iidfile, []byte(img.Digest.String()), 0o644); err != nil {
			return err
		}
	}
	if *quiet {
		fmt.Println(img.Digest.String())
	} else {
		sink.Info("image " + img.Digest.String())
	}
	return nil
}

// parseBuildArgs reads K=V pairs; a bare K takes its value from the
// environment and is skipped when unset, as docker does.
func parseBuildArgs(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range in {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, fmt.Errorf("invalid --build-arg %q", a)
		}
		if !ok {
			env, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = env
		}
		out[k] = v
	}
	return out, nil
}

// parseMirrors reads REGISTRY=MIRROR pairs.
func parseMirrors(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range in {
		from, to, ok := strings.Cut(m, "=")
		if !ok || from == "" || to == "" {
			return nil, fmt.Errorf("invalid --registry-mirror %q: want REGISTRY=MIRROR", m)
		}
		out[from] = to
	}
	return out, nil
}

// runCheck prints the warnings of the build checks, one per line as
// FILE:LINE: Rule: message, and fails when there is any, as docker build
// --check does.
func runCheck(ctx context.Context, b *builder.Builder, o builder.Options) error {
	warnings, err := b.Check(ctx, o)
	for _, w := range warnings {
		fmt.Println(w.String())
	}
	if err != nil {
		return err
	}
	if n := len(warnings); n > 0 {
		return fmt.Errorf("check found %d warning(s)", n)
	}
	fmt.Fprintln(os.Stderr, "Check complete, no warnings found.")
	return nil
}

// checkCompression validates --compression and --compression-level.
func checkCompression(c string, level int) error {
	switch {
	case c != "gzip" && c != "zstd":
		return usagef("--compression must be gzip or zstd, not %q", c)
	case c == "gzip" && (level < 0 || level > 9), c == "zstd" && (level < 0 || level > 22):
		return usagef("--compression-level %d is out of range for %s", level, c)
	}
	return nil
}
