// Package cache keeps the content-addressed step cache: for every step key,
// what the step produced (a snapshot, and once exported, its layer blob).
//
// Keys are digests over everything that can change a step's output (see
// Key). Entries are written to a temp file and renamed into place, so a
// build killed at any point never leaves an entry that a later build trusts;
// an entry whose snapshot or blob has gone is a miss for the caller.
package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layer describes a step's compressed layer blob.
type Layer struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

// Entry is what one step produced.
type Entry struct {
	Key string `json:"key"`
	// Empty is true when the step changed no file: it adds no layer.
	Empty bool `json:"empty,omitempty"`
	// Snapshot is the key of the snapshot holding the step's layer.
	Snapshot string `json:"snapshot,omitempty"`
	// Layer is set once the step's snapshot has been exported as a blob.
	Layer *Layer `json:"layer,omitempty"`
	// Clamped holds the layers made with SOURCE_DATE_EPOCH (mtimes
	// clamped), by the epoch in unix seconds; gc holds them as it holds
	// Layer.
	Clamped map[string]Layer `json:"clamped,omitempty"`
	History v1.History       `json:"history"`
}

// LayerFor returns the layer recorded for an epoch (nil: none).
func (e *Entry) LayerFor(epoch *int64) *Layer {
	if epoch == nil {
		return e.Layer
	}
	if l, ok := e.Clamped[strconv.FormatInt(*epoch, 10)]; ok {
		return &l
	}
	return nil
}

// SetLayerFor records l as the layer made with epoch (nil: none).
func (e *Entry) SetLayerFor(epoch *int64, l Layer) {
	if epoch == nil {
		e.Layer = &l
		return
	}
	if e.Clamped == nil {
		e.Clamped = map[string]Layer{}
	}
	e.Clamped[strconv.FormatInt(*epoch, 10)] = l
}

// Store looks up and records entries.
type Store interface {
	Get(key string) (Entry, bool, error)
	Put(e Entry) error
}

// Local is a Store in a directory, one JSON file per key.
type Local struct{ dir string }

var _ Store = (*Local)(nil)

// OpenLocal opens (creating) the store in dir.
func OpenLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(filepath.Join(dir, "entries"), 0o700); err != nil {
		return nil, fmt.Errorf("opening cache: %w", err)
	}
	return &Local{dir: dir}, nil
}

func (l *Local) path(key string) string {
	return filepath.Join(l.dir, "entries", key+".json")
}

// Get returns the entry for key. A missing or unreadable entry is a miss.
func (l *Local) Get(key string) (Entry, bool, error) {
	if !validKey(key) {
		return Entry{}, false, fmt.Errorf("invalid cache key %q", key)
	}
	b, err := os.ReadFile(l.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading cache entry: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil || e.Key != key {
		// A torn or foreign entry is never trusted.
		return Entry{}, false, nil
	}
	// The file's mtime is the entry's last use, which garbage collection
	// reads to drop the least recently used entries first. Best effort: a
	// failed touch only makes the entry look older.
	_ = os.Chtimes(l.path(key), time.Time{}, time.Now())
	return e, true, nil
}

// Put records e, replacing any entry under the same key.
func (l *Local) Put(e Entry) error {
	if !validKey(e.Key) {
		return fmt.Errorf("invalid cache key %q", e.Key)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Join(l.dir, "entries"), ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing cache entry: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing cache entry: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing cache entry: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing cache entry: %w", err)
	}
	if err := os.Rename(f.Name(), l.path(e.Key)); err != nil {
		return fmt.Errorf("writing cache entry: %w", err)
	}
	return nil
}

func validKey(k string) bool {
	if len(k) != 64 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil
}

// Key digests parts into a cache key. Each part is length-prefixed so that
// no two different part lists give the same input.
func Key(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}
