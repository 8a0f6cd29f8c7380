package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher/ignorefile"
)

// buildContext is the directory COPY and ADD read from, with its ignore
// patterns.
type buildContext struct {
	dir    string
	ignore []string
}

// newBuildContext resolves the context directory and reads the ignore file:
// NAME.dockerignore beside a Dockerfile called NAME wins over the context's
// .dockerignore, as in BuildKit.
func newBuildContext(dir, dockerfilePath string) (*buildContext, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", dir)
	}
	bc := &buildContext{dir: abs}
	candidates := []string{
		dockerfilePath + ".dockerignore",
		filepath.Join(abs, ".dockerignore"),
	}
	for _, c := range candidates {
		f, err := os.Open(c)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", c, err)
		}
		bc.ignore, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", c, err)
		}
		break
	}
	return bc, nil
}
