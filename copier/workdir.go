package copier

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/strata-build/strata/user"
)

// ResolveIn returns the host path of p inside root, with symlinks followed
// only within root.
func ResolveIn(root, p string) (string, error) {
	full, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", p, err)
	}
	return full, nil
}

// MkdirAll creates dir (absolute, inside root) and its missing parents as
// WORKDIR does: mode 0755, owned by the user in effect (userSpec, resolved
// in root's own passwd and group files). Existing directories are left as
// they are.
func MkdirAll(root, dir, userSpec string) error {
	u, err := user.Lookup(root, userSpec)
	if err != nil {
		return err
	}
	cur := "/"
	for _, part := range strings.Split(path.Clean("/"+dir), "/") {
		if part == "" {
			continue
		}
		cur = path.Join(cur, part)
		full, err := securejoin.SecureJoin(root, cur)
		if err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		fi, err := os.Stat(full)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return fmt.Errorf("creating %s: %s is not a directory", dir, cur)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		// A dangling symlink's target may need parents of its own.
		if err := os.MkdirAll(full, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		if err := os.Chmod(full, 0o755); err != nil {
			return err
		}
		if err := os.Lchown(full, int(u.UID), int(u.GID)); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	return nil
}
