// Package source materialises the remote sources of ADD (an HTTP(S) URL or
// a Git repository) as plain files under a cache directory, so the builder
// can copy them into a stage with package copier like any other source.
//
// # Cache layout (cacheDir is owned by this package)
//
//	cacheDir/http/urls/SHA256(URL).json  per-URL record: ETag, Last-Modified, digest, names
//	cacheDir/http/files/ID/NAME          one downloaded file, mode 0600, mtime set (immutable)
//	cacheDir/http/tmp/                   downloads in progress
//	cacheDir/git/trees/KEY/              one checked-out tree (immutable)
//	cacheDir/git/tmp/                    fetches in progress
//
// Everything is written under tmp and renamed into files/ or trees/ only once
// complete and verified, so an interrupted fetch never leaves anything a
// later call trusts. Published entries are never modified; concurrent
// callers (in one process or several) may race to publish the same entry,
// and the loser discards its copy. Left-over tmp entries (a killed process)
// and superseded files/trees are not removed here: that is for a prune.
//
// # How the builder uses it
//
// For ADD <url>: call FetchURL before looking up the step cache (it is a
// conditional request, cheap when nothing changed), then key the step with
// URLResult.CacheKey (plus the instruction's own fields) and, on a miss,
// copy with copier.Request{SrcRoot: res.Dir, Sources: []string{res.Name}}
// (the copier must not unpack it unless ADD --unpack asked for that).
//
// For ADD <git>: call FetchGit first too (git ls-remote resolves the ref to a
// commit; an unchanged commit reuses the cached tree with no fetch), key the
// step with GitResult.CacheKey and copy the tree's contents into the
// destination as BuildKit does: SrcRoot: res.Dir, Sources: []string{"."}.
// In both cases set FromContext (entries get owner 0:0, as BuildKit gives
// remote sources) with no Ignore patterns, and Add false for the URL file
// unless ADD --unpack=true asked for extraction: remote archives are not
// unpacked by default.
//
// Classify tells a Git source from a URL the way BuildKit's Dockerfile
// frontend does.
package source
