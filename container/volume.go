package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Volume is a named volume.
type Volume struct {
	Name       string    `json:"name"`
	Mountpoint string    `json:"mountpoint"` // the host directory holding its content
	CreatedAt  time.Time `json:"created_at"`
	// Anonymous volumes were made for one container (--mount type=volume
	// without a source, an image VOLUME) and go with it.
	Anonymous bool `json:"anonymous,omitempty"`
}

func (s *Store) volumesDir() string           { return filepath.Join(s.root, "volumes") }
func (s *Store) volumeDir(name string) string { return filepath.Join(s.volumesDir(), name) }
func (s *Store) volumesLock() string          { return filepath.Join(s.volumesDir(), ".lock") }

// CreateVolume makes the named volume; an existing one is returned as it
// is, as `docker volume create` does.
func (s *Store) CreateVolume(ctx context.Context, name string) (Volume, error) {
	if !isName(name) || len(name) < 2 {
		return Volume{}, fmt.Errorf("invalid volume name %q: at least two of [a-zA-Z0-9][a-zA-Z0-9_.-]", name)
	}
	v, _, err := s.ensureVolume(ctx, name, false)
	return v, err
}

// ensureVolume returns the volume, making it when missing (created
// reports that).
func (s *Store) ensureVolume(ctx context.Context, name string, anonymous bool) (Volume, bool, error) {
	if !isName(name) {
		return Volume{}, false, fmt.Errorf("invalid volume name %q", name)
	}
	unlock, err := lockFile(ctx, s.volumesLock())
	if err != nil {
		return Volume{}, false, err
	}
	defer unlock()
	if v, err := s.Volume(name); err == nil {
		return v, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Volume{}, false, err
	}
	tmp, err := os.MkdirTemp(s.volumesDir(), ".tmp-")
	if err != nil {
		return Volume{}, false, err
	}
	v := Volume{Name: name, Mountpoint: filepath.Join(s.volumeDir(name), "_data"), CreatedAt: time.Now().UTC(), Anonymous: anonymous}
	err = os.Mkdir(filepath.Join(tmp, "_data"), 0o755)
	if err == nil {
		err = os.Chmod(filepath.Join(tmp, "_data"), 0o755)
	}
	if err == nil {
		err = writeJSON(filepath.Join(tmp, "volume.json"), &v)
	}
	if err == nil {
		err = os.Rename(tmp, s.volumeDir(name))
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return Volume{}, false, fmt.Errorf("creating volume %s: %w", name, err)
	}
	return v, true, nil
}

// Volume returns the named volume.
func (s *Store) Volume(name string) (Volume, error) {
	if !isName(name) {
		return Volume{}, fmt.Errorf("no such volume: %s: %w", name, ErrNotFound)
	}
	var v Volume
	if err := readJSON(filepath.Join(s.volumeDir(name), "volume.json"), &v); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Volume{}, fmt.Errorf("no such volume: %s: %w", name, ErrNotFound)
		}
		return Volume{}, err
	}
	v.Mountpoint = filepath.Join(s.volumeDir(name), "_data")
	return v, nil
}

// Volumes lists the volumes by name.
func (s *Store) Volumes() ([]Volume, error) {
	ents, err := os.ReadDir(s.volumesDir())
	if err != nil {
		return nil, err
	}
	var out []Volume
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if v, err := s.Volume(e.Name()); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RemoveVolume removes a volume and its content. A volume that any
// container (running or not) uses is refused, as Docker does; remove the
// container first.
func (s *Store) RemoveVolume(ctx context.Context, name string) error {
	return s.removeVolume(ctx, name, true)
}

func (s *Store) removeVolume(ctx context.Context, name string, checkUse bool) error {
	if _, err := s.Volume(name); err != nil {
		return err
	}
	unlock, err := lockFile(ctx, s.volumesLock())
	if err != nil {
		return err
	}
	defer unlock()
	if checkUse {
		users, err := s.volumeUsers(name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("volume %s is in use by container(s) %s", name, strings.Join(users, ", "))
		}
	}
	trash, err := os.MkdirTemp(s.volumesDir(), ".trash-")
	if err != nil {
		return err
	}
	if err := os.Rename(s.volumeDir(name), filepath.Join(trash, "v")); err != nil {
		_ = os.Remove(trash)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no such volume: %s: %w", name, ErrNotFound)
		}
		return err
	}
	return removeTree(trash)
}

// volumeUsers lists the short IDs of containers that mount the volume.
func (s *Store) volumeUsers(name string) ([]string, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range all {
		for _, m := range c.Config.Mounts {
			if m.Type == MountVolume && m.Source == name {
				out = append(out, c.ShortID())
				break
			}
		}
	}
	return out, nil
}
