package snapshot

// This file fixes the API other packages code against. Implementations live
// in the other files of the package.

import "path/filepath"

// Mount describes one mount for package exec to perform. Target is a path
// inside the container's root ("/" for the root filesystem itself).
type Mount struct {
	Type    string   // "overlay", "bind", "tmpfs", ...
	Source  string   // host path for bind; "overlay"/"tmpfs" otherwise
	Target  string   // path inside the root
	Options []string // e.g. lowerdir=..., upperdir=..., workdir=..., ro, rbind
	// Subdir, when set, mounts only this directory of the mounted tree at
	// Target (resolved inside it; symlinks cannot lead out).
	Subdir string
}

// Snapshot is a committed, immutable layer directory.
type Snapshot struct {
	Key string // the key it was committed under (a hex digest)
	Dir string // absolute path of the layer's files (overlay lowerdir): STORE/KEY16/fs
}

// Active is a writable snapshot being made.
type Active struct {
	Dir  string // the upper dir: what the step writes
	Work string // overlay work dir, same filesystem as Dir
	tmp  string // the temp dir holding both; renamed on Commit
}

// Sidecar returns where a file that belongs with the snapshot being made is
// kept: beside its tree, committed and removed with it. name is a plain
// file name (not "fs", "work" or "meta.json").
func (a *Active) Sidecar(name string) string { return filepath.Join(a.tmp, name) }

// Sidecar returns the path of a file committed with the snapshot (see
// Active.Sidecar); it may not exist.
func (s Snapshot) Sidecar(name string) string { return filepath.Join(filepath.Dir(s.Dir), name) }
