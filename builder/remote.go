package builder

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path"
	"path/filepath"

	"github.com/strata-build/strata/dockerfile"
	"github.com/strata-build/strata/source"
)

// remoteSource is an ADD source fetched from a URL or a git repository:
// where the copier finds it, and what keys the step.
type remoteSource struct {
	dir     string   // SrcRoot for the copier
	sources []string // what to copy from dir
	unpack  bool     // extract an archive (URLs only with --unpack=true)
	key     string
}

// remote fetches the remote source of an ADD step, or returns nil when the
// step reads local sources. The fetch comes before the cache lookup: the
// content (or commit) is the key, so an unchanged remote keeps the step
// cached; the requests are conditional, cheap when nothing changed.
func (r *run) remote(ctx context.Context, step *dockerfile.Step) (*remoteSource, error) {
	c := step.Copy
	if c == nil || !c.Add || c.FromStage != nil || c.FromImage != "" {
		return nil, nil
	}
	n := 0
	for _, s := range c.Sources {
		if source.Classify(s) != source.KindLocal {
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	if len(c.Sources) > 1 {
		return nil, errors.New("ADD of a URL or git repository takes it as its only source")
	}

	r.mu.Lock()
	if rs, ok := r.remotes[step]; ok {
		r.mu.Unlock()
		return rs, nil
	}
	r.mu.Unlock()

	src := c.Sources[0]
	dir := filepath.Join(r.b.root, "cache", "sources")
	var rs *remoteSource
	switch source.Classify(src) {
	case source.KindGit:
		res, err := source.FetchGit(ctx, dir, src, source.GitOptions{KeepGitDir: c.KeepGitDir, Checksum: c.Checksum})
		if err != nil {
			return nil, err
		}
		rs = &remoteSource{dir: res.Dir, sources: []string{"."}, key: res.CacheKey()}
	default:
		client := &http.Client{Transport: http.DefaultTransport}
		res, err := source.FetchURL(ctx, client, dir, src, source.URLOptions{Checksum: c.Checksum, Filename: urlBase(src)})
		if err != nil {
			return nil, err
		}
		rs = &remoteSource{dir: res.Dir, sources: []string{res.Name}, key: res.CacheKey(), unpack: c.Unpack != nil && *c.Unpack}
	}
	r.mu.Lock()
	r.remotes[step] = rs
	r.mu.Unlock()
	return rs, nil
}

// urlBase names a downloaded file the way BuildKit's Dockerfile frontend
// does: the last component of the URL's path.
func urlBase(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "__unnamed__"
	}
	b := path.Base(u.Path)
	if b == "." || b == "/" || b == "" {
		return "__unnamed__"
	}
	return b
}
