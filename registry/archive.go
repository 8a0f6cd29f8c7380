package registry

import (
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RefNameAnnotation names an image in an OCI layout's index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteOCILayout writes img into the OCI image layout at dir (created, or
// appended to when it already is a layout). Each tag becomes one index
// entry annotated with org.opencontainers.image.ref.name set to the tag as
// given; with no tags the image is added without a name.
func WriteOCILayout(img v1.Image, dir string, tags []string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("creating OCI layout %s: %w", dir, err)
		}
	}
	if len(tags) == 0 {
		if err := p.AppendImage(img); err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", dir, err)
		}
		return nil
	}
	for _, t := range tags {
		ann := map[string]string{RefNameAnnotation: t}
		if err := p.AppendImage(img, layout.WithAnnotations(ann)); err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", dir, err)
		}
	}
	return nil
}

// WriteDockerArchive writes img as a `docker load` tarball to file (temp
// file + rename, so file is either complete or untouched). tags become its
// RepoTags; with none the archive is untagged.
func WriteDockerArchive(img v1.Image, file string, tags []string) error {
	refs := map[name.Reference]v1.Image{}
	for _, t := range tags {
		tag, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("writing docker archive: tag %q: %w", t, err)
		}
		refs[tag] = img
	}
	if len(refs) == 0 {
		// A digest reference puts the image in the archive without RepoTags.
		d, err := img.Digest()
		if err != nil {
			return fmt.Errorf("writing docker archive: %w", err)
		}
		ref, err := name.NewDigest("strata/untagged@" + d.String())
		if err != nil {
			return fmt.Errorf("writing docker archive: %w", err)
		}
		refs[ref] = img
	}

	return writeAtomic(file, func(w io.Writer) error {
		return tarball.MultiRefWrite(refs, w)
	})
}
