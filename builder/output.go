package builder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// Output is one --output destination.
type Output struct {
	Type string // oci, docker, local, tar
	Dest string
}

// IsImage reports whether the output holds an image (manifest and layer
// blobs) rather than only its filesystem.
func (o Output) IsImage() bool { return o.Type == "oci" || o.Type == "docker" }

// ParseOutput reads "type=oci,dest=DIR" (docker build's --output syntax).
// A bare path means type=local.
func ParseOutput(s string) (Output, error) {
	if !strings.Contains(s, "=") {
		return Output{Type: "local", Dest: s}, nil
	}
	var o Output
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return o, fmt.Errorf("invalid --output %q: %q is not key=value", s, kv)
		}
		switch strings.TrimSpace(k) {
		case "type":
			o.Type = v
		case "dest":
			o.Dest = v
		default:
			return o, fmt.Errorf("invalid --output %q: unknown key %q", s, k)
		}
	}
	switch o.Type {
	case "oci", "docker", "local", "tar":
	default:
		return o, fmt.Errorf("invalid --output %q: type must be oci, docker, local or tar", s)
	}
	if o.Dest == "" {
		return o, fmt.Errorf("invalid --output %q: dest is required", s)
	}
	return o, nil
}

// Export writes img to an output.
func (b *Builder) Export(ctx context.Context, img *registry.Image, o Output, tags []string) error {
	v := b.store.V1(img)
	switch o.Type {
	case "oci":
		return registry.WriteOCILayout(v, o.Dest, tags)
	case "docker":
		return registry.WriteDockerArchive(v, o.Dest, tags)
	case "local":
		return b.exportLocal(ctx, img, o.Dest)
	case "tar":
		return b.exportTar(ctx, img, o.Dest)
	}
	return fmt.Errorf("unsupported output type %q", o.Type)
}

// exportLocal writes the image's root filesystem into dir. A new dir is
// made beside its final name and renamed, so a failure leaves nothing.
func (b *Builder) exportLocal(ctx context.Context, img *registry.Image, dir string) error {
	target := dir
	_, err := os.Lstat(dir)
	fresh := errors.Is(err, fs.ErrNotExist)
	if fresh {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dir), ".strata-out-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		target = tmp
	}
	for _, l := range img.Layers {
		rc, err := b.store.OpenLayer(ctx, l)
		if err != nil {
			return err
		}
		err = snapshot.Apply(ctx, target, rc, snapshot.ApplyOptions{Mode: snapshot.ApplyFlatten})
		rc.Close()
		if err != nil {
			return fmt.Errorf("writing %s: %w", dir, err)
		}
	}
	if fresh {
		if err := os.Chmod(target, 0o755); err != nil {
			return err
		}
		return os.Rename(target, dir)
	}
	return nil
}

// exportTar writes the image's root filesystem as one tar file: the
// filesystem is flattened into a scratch directory beside the file, then
// archived into a temporary file that is renamed into place.
func (b *Builder) exportTar(ctx context.Context, img *registry.Image, file string) error {
	parent := filepath.Dir(file)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(parent, ".strata-rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	tree := filepath.Join(scratch, "rootfs")
	if err := b.exportLocal(ctx, img, tree); err != nil {
		return err
	}
	f, err := os.CreateTemp(parent, ".strata-out-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	bw := bufio.NewWriterSize(f, 1<<20)
	_, err = snapshot.Diff(ctx, tree, bw, snapshot.DiffOptions{})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
}
