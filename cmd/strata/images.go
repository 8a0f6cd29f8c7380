package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/strata-build/strata/builder"
	"github.com/strata-build/strata/registry"
)

func runImport(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("import", pflag.ContinueOnError)
	tags := fs.StringArrayP("tag", "t", nil, "name the image (repeatable)")
	changes := fs.StringArrayP("change", "c", nil, "apply a Dockerfile instruction to the config (CMD, ENV, ...)")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("exactly one ROOTFS directory is required")
	}
	for _, t := range *tags {
		if err := registry.ValidateRef(t); err != nil {
			return usagef("invalid tag %q: %v", t, err)
		}
	}
	defer holdStore(ctx, g)()
	b, err := builder.New(g.root)
	if err != nil {
		return err
	}
	img, err := b.Import(ctx, fs.Arg(0), *changes)
	if err != nil {
		return err
	}
	for _, t := range *tags {
		if err := b.Store().Tag(t, img); err != nil {
			return err
		}
	}
	fmt.Println(img.Digest.String())
	return nil
}

func runImages(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("images", pflag.ContinueOnError)
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	s, err := registry.OpenStore(g.root)
	if err != nil {
		return err
	}
	refs, err := s.List()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(refs))
	for r := range refs {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%s\t%s\n", n, refs[n])
	}
	return nil
}

func runRegistry(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 || args[0] != "serve" {
		return usagef("the only registry command is serve")
	}
	fs := pflag.NewFlagSet("registry serve", pflag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "listen address")
	dir := fs.String("dir", "", "keep blobs in this directory (default: memory)")
	verbose := fs.BoolP("verbose", "v", false, "log every request")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	var l *log.Logger
	if *verbose {
		l = log.New(os.Stderr, "registry: ", log.LstdFlags)
	}
	return registry.Serve(ctx, *addr, *dir, l, func(a net.Addr) {
		fmt.Fprintf(os.Stderr, "registry listening on %s\n", a)
	})
}

func runPush(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("push", pflag.ContinueOnError)
	insecure := fs.StringArray("insecure-registry", nil, "use plain HTTP for this HOST:PORT")
	jobs := fs.Int("jobs", 0, "layers uploaded at once (default 3)")
	compress := fs.String("compression", "gzip", "compression of layers built here: gzip or zstd")
	level := fs.Int("compression-level", 0, "compression level (gzip 1-9, zstd 1-22; 0 = default)")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usagef("push takes IMAGE [DESTINATION]")
	}
	if err := checkCompression(*compress, *level); err != nil {
		return err
	}
	src, dst := fs.Arg(0), fs.Arg(0)
	if fs.NArg() == 2 {
		dst = fs.Arg(1)
	}
	if err := registry.ValidateRef(dst); err != nil {
		return usagef("invalid destination %q: %v", dst, err)
	}
	defer holdStore(ctx, g)()
	s, err := registry.OpenStore(g.root)
	if err != nil {
		return err
	}
	img, ok, err := s.Lookup(src)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no such image in the local store: %s", src)
	}
	// Layers built here are compressed now (and remembered for the next
	// push).
	dist, err := s.Compressed(ctx, img, registry.Compression(*compress), *level)
	if err != nil {
		return err
	}
	// Push's errors already name the destination.
	if err := registry.Push(ctx, s.V1(dist), dst, registry.Options{Insecure: *insecure, Jobs: *jobs}); err != nil {
		return err
	}
	// The local name now means what was pushed (same config and files),
	// so its digest is the one the registry serves.
	byName := !strings.HasPrefix(src, "sha256:") && !strings.Contains(src, "@")
	if dist.Digest != img.Digest && byName {
		if err := s.Tag(src, dist); err != nil {
			return err
		}
	}
	fmt.Println(dist.Digest.String())
	return nil
}

func runTag(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("tag", pflag.ContinueOnError)
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 2 {
		return usagef("tag takes SOURCE TARGET")
	}
	if err := registry.ValidateRef(fs.Arg(1)); err != nil {
		return usagef("invalid tag %q: %v", fs.Arg(1), err)
	}
	defer holdStore(ctx, g)()
	s, err := registry.OpenStore(g.root)
	if err != nil {
		return err
	}
	img, ok, err := s.Lookup(fs.Arg(0))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no such image in the local store: %s", fs.Arg(0))
	}
	return s.Tag(fs.Arg(1), img)
}
