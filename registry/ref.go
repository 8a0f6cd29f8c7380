package registry

import "github.com/google/go-containerregistry/pkg/name"

// ValidateRef reports whether ref is a valid image reference (tag or digest).
func ValidateRef(ref string) error {
	_, err := name.ParseReference(ref)
	return err
}
