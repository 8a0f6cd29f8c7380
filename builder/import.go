package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// Import makes a one-layer image from the directory tree rootfs, like
// `docker import`. changes are Dockerfile instructions (CMD, ENV, ...)
// applied to the config, as with `docker import --change`.
func (b *Builder) Import(ctx context.Context, rootfs string, changes []string) (*registry.Image, error) {
	fi, err := os.Stat(rootfs)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("import: %s is not a directory", rootfs)
	}
	cfg, err := importConfig(ctx, changes)
	if err != nil {
		return nil, err
	}
	l, err := b.store.WriteLayer(ctx, func(w io.Writer) error {
		_, err := snapshot.Diff(ctx, rootfs, w, snapshot.DiffOptions{})
		return err
	}, registry.Gzip, 0)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	now := v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	cfg.Created = now
	cfg.History = []v1.History{{Created: now, CreatedBy: "strata import " + rootfs, Comment: "imported"}}
	return b.store.WriteImage(ctx, cfg, []registry.Layer{l}, true)
}

// importConfig applies --change instructions to an empty config by planning
// them as a FROM scratch Dockerfile.
func importConfig(ctx context.Context, changes []string) (*v1.ConfigFile, error) {
	for _, c := range changes {
		kw, _, _ := strings.Cut(strings.TrimSpace(c), " ")
		switch strings.ToUpper(kw) {
		case "CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR":
		default:
			return nil, fmt.Errorf("import: --change %q: only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR are allowed", c)
		}
	}
	src := "FROM scratch\n" + strings.Join(changes, "\n") + "\n"
	df, err := dockerfile.Parse("--change", []byte(src))
	if err != nil {
		return nil, err
	}
	plan, err := df.Plan(ctx, dockerfile.Options{Platform: "linux/" + runtime.GOARCH})
	if err != nil {
		return nil, err
	}
	// Like FROM scratch, the config gets the default PATH; unlike it, no
	// working directory unless one was asked for (docker import sets none).
	cfg := plan.Target.Config.DeepCopy()
	if !slices.ContainsFunc(changes, func(c string) bool {
		kw, _, _ := strings.Cut(strings.TrimSpace(c), " ")
		return strings.EqualFold(kw, "WORKDIR")
	}) {
		cfg.Config.WorkingDir = ""
	}
	return cfg, nil
}
