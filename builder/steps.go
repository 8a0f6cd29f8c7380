package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/copier"
	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/snapshot"
)

// Helper names run by exec in a child with mounts made.
const (
	helperCopy  = "copy"
	helperMkdir = "mkdir"
)

// Helpers returns the functions that exec.Child runs in helper processes.
func Helpers() map[string]func(payload []byte) error {
	return map[string]func([]byte) error{
		helperCopy:  runCopyHelper,
		helperMkdir: runMkdirHelper,
	}
}

// inputKey returns what a step reads beyond its instruction text: the
// checksum of COPY sources, the state of stages it reads, inline data.
func (r *run) inputKey(ctx context.Context, step *dockerfile.Step) ([]string, error) {
	var out []string
	switch step.Kind {
	case dockerfile.Copy:
		c := step.Copy
		out = append(out, "copy", c.Dest, c.Workdir, c.Chown, c.Chmod, fmt.Sprint(c.Add, c.Parents, c.Link),
			strings.Join(c.Sources, "\x00"), strings.Join(c.Excludes, "\x00"))
		for _, in := range c.Inline {
			out = append(out, "inline", in.Name, digestBytes(in.Data), fmt.Sprint(in.Mode))
		}
		switch {
		case c.FromStage != nil:
			src, err := r.stageResult(c.FromStage)
			if err != nil {
				return nil, err
			}
			out = append(out, "stage", src.key)
		case c.FromImage != "":
			img, err := r.image(ctx, c.FromImage)
			if err != nil {
				return nil, err
			}
			out = append(out, "image", img.Digest.String())
		case len(c.Sources) > 0:
			rs, err := r.remote(ctx, step)
			if err != nil {
				return nil, err
			}
			if rs != nil {
				out = append(out, "remote", rs.key)
				break
			}
			sum, err := copier.Checksum(ctx, r.copyRequest(c, r.ctx.dir, ""))
			if err != nil {
				return nil, err
			}
			out = append(out, "context", sum)
		}
	case dockerfile.Run:
		for _, f := range step.Run.Files {
			out = append(out, "file", f.Path, digestBytes(f.Data), fmt.Sprint(f.Mode))
		}
		out = append(out, "stdin", digestBytes(step.Run.Stdin))
		for _, m := range step.Run.Mounts {
			mk, err := r.mountKey(ctx, m)
			if err != nil {
				return nil, err
			}
			out = append(out, mk...)
		}
	}
	return out, nil
}

func digestBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// copyRequest builds the copier request for a COPY/ADD step; srcRoot and
// destRoot are where the helper finds the two filesystems.
func (r *run) copyRequest(c *dockerfile.CopyStep, srcRoot, destRoot string) copier.Request {
	req := copier.Request{
		SrcRoot:  srcRoot,
		Sources:  c.Sources,
		Excludes: c.Excludes,
		DestRoot: destRoot,
		Dest:     c.Dest,
		Workdir:  c.Workdir,
		Chown:    c.Chown,
		Chmod:    c.Chmod,
		Add:      c.Add,
		Parents:  c.Parents,
	}
	for _, in := range c.Inline {
		req.Inline = append(req.Inline, copier.Inline{Name: in.Name, Data: in.Data, Mode: in.Mode})
	}
	if c.FromStage == nil && c.FromImage == "" {
		req.Ignore = r.ctx.ignore
		req.FromContext = true
		req.Digests = r.digests
	}
	req.Epoch = r.epoch()
	return req
}

// scratchDir makes a per-step directory under ROOT/tmp for mount points and
// provided files; the caller removes it.
func (r *run) scratchDir() (string, error) {
	return os.MkdirTemp(filepath.Join(r.b.root, "tmp"), "step-")
}

func (r *run) execCopy(ctx context.Context, step *dockerfile.Step, st *state, a *snapshot.Active) error {
	c := step.Copy
	dir, err := r.scratchDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	destRoot := filepath.Join(dir, "dest")
	var mounts []snapshot.Mount
	userRoot, reuse, reuseIndex, indexOut := "", "", "", ""
	if direct, err := directCopy(st, c, a); err != nil {
		return err
	} else if direct {
		// A new tree: written straight into the upper dir, which is what
		// the overlay would do, without its cost per created file. The
		// previous result of this COPY lends its unchanged files, and its
		// index (kept with its snapshot) says which sources they came from.
		destRoot = a.Dir
		if prev, ok := r.copyHint(step); ok {
			reuse, reuseIndex = prev.Dir, prev.Sidecar(copyIndexName)
		}
		indexOut = a.Sidecar(copyIndexName)
		if c.Chown != "" && len(st.layers) > 0 {
			userRoot = filepath.Join(dir, "users")
			m := snapshot.OverlayMount(st.lowers(), nil)
			m.Target = userRoot
			mounts = append(mounts, m)
		}
	} else {
		dest := snapshot.OverlayMount(st.lowers(), a).Volatile()
		dest.Target = destRoot
		mounts = append(mounts, dest)
	}

	srcRoot := r.ctx.dir
	var src *state
	switch {
	case c.FromStage != nil:
		if src, err = r.stageResult(c.FromStage); err != nil {
			return err
		}
	case c.FromImage != "":
		img, err := r.image(ctx, c.FromImage)
		if err != nil {
			return err
		}
		src = &state{}
		for _, l := range img.Layers {
			snap, err := r.unpack(ctx, l)
			if err != nil {
				return err
			}
			src.layers = append(src.layers, layerRef{snap: snap})
		}
	}
	if src != nil {
		src = src.clone() // shared with other stages: materialize a copy
		if err := r.materialize(ctx, src); err != nil {
			return err
		}
		srcRoot = filepath.Join(dir, "src")
		if len(src.layers) == 0 {
			if err := os.Mkdir(srcRoot, 0o755); err != nil {
				return err
			}
		} else {
			m := snapshot.OverlayMount(src.lowers(), nil)
			m.Target = srcRoot
			mounts = append(mounts, m)
		}
	}
	req := r.copyRequest(c, srcRoot, destRoot)
	req.UserRoot = userRoot
	req.Reuse, req.ReuseIndex, req.IndexOut = reuse, reuseIndex, indexOut
	if rs, err := r.remote(ctx, step); err != nil {
		return err
	} else if rs != nil {
		req.SrcRoot, req.Sources, req.Add, req.Ignore = rs.dir, rs.sources, rs.unpack, nil
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	err = exec.RunHelper(ctx, exec.Helper{Name: helperCopy, Payload: payload, Mounts: mounts, SnapshotRoot: r.b.snaps.Root()}, &stderr)
	if err != nil {
		return helperError(err, &stderr)
	}
	return nil
}

// helperError prefers the helper's own message over exec's wrapper.
func helperError(err error, stderr *bytes.Buffer) error {
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		return err
	}
	lines := strings.Split(msg, "\n")
	return fmt.Errorf("%s", lines[len(lines)-1])
}

func runCopyHelper(payload []byte) error {
	var req copier.Request
	if err := json.Unmarshal(payload, &req); err != nil {
		return err
	}
	return copier.Copy(context.Background(), req)
}

type mkdirRequest struct {
	Root string
	Path string
	User string
}

func (r *run) execWorkdir(ctx context.Context, step *dockerfile.Step, st *state, a *snapshot.Active) error {
	dir, err := r.scratchDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	m := snapshot.OverlayMount(st.lowers(), a).Volatile()
	m.Target = root
	payload, err := json.Marshal(mkdirRequest{Root: root, Path: step.Workdir, User: step.User})
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	err = exec.RunHelper(ctx, exec.Helper{Name: helperMkdir, Payload: payload, Mounts: []snapshot.Mount{m}, SnapshotRoot: r.b.snaps.Root()}, &stderr)
	if err != nil {
		return helperError(err, &stderr)
	}
	return nil
}

func runMkdirHelper(payload []byte) error {
	var req mkdirRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return err
	}
	return copier.MkdirAll(req.Root, req.Path, req.User)
}

// directCopy reports whether a COPY may write into the upper dir directly:
// its destination does not exist in the layers below and no symlink lies
// on the way, so the overlay would only copy up the existing parent dirs
// (done here) and create new entries in the upper dir. It copies the
// parents up when it says yes.
func directCopy(st *state, c *dockerfile.CopyStep, a *snapshot.Active) (bool, error) {
	dest := c.Dest
	if !path.IsAbs(dest) {
		dest = path.Join("/", c.Workdir, dest)
	}
	dest = path.Clean(dest)
	if dest == "/" {
		return false, nil
	}
	entries, err := snapshot.LookupMerged(st.lowers(), dest)
	if errors.Is(err, snapshot.ErrNotSimple) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(entries) == 0 || entries[len(entries)-1].Exists {
		return false, nil
	}
	for _, e := range entries[:len(entries)-1] {
		if !e.Info.IsDir() {
			return false, nil // the overlay path reports this error
		}
	}
	if err := snapshot.CopyUpDirs(a.Dir, dest, entries); err != nil {
		return false, err
	}
	return true, nil
}

// copyFamily names a COPY apart from its sources' content, so a rebuild
// after a change finds the previous result of "the same" COPY.
func copyFamily(step *dockerfile.Step) string {
	c := step.Copy
	return cache.Key("copy-family", step.Text, c.Dest, c.Workdir)
}

func (r *run) hintPath(step *dockerfile.Step) string {
	return filepath.Join(r.b.root, "cache", "hints", copyFamily(step))
}

// copyIndexName is the sidecar of a COPY's snapshot listing the source
// each file came from (copier's IndexOut), for the next COPY's reuse.
const copyIndexName = "copy-index"

// copyHint returns the snapshot of the last result of this COPY, for the
// copier to hard-link unchanged files from.
func (r *run) copyHint(step *dockerfile.Step) (snapshot.Snapshot, bool) {
	b, err := os.ReadFile(r.hintPath(step))
	if err != nil {
		return snapshot.Snapshot{}, false
	}
	return r.b.snaps.Get(strings.TrimSpace(string(b)))
}

// recordCopyHint remembers snapKey as the latest result of this COPY.
func (r *run) recordCopyHint(step *dockerfile.Step, snapKey string) {
	p := r.hintPath(step)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return
	}
	_, werr := tmp.WriteString(snapKey)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), p) != nil {
		os.Remove(tmp.Name())
	}
}
