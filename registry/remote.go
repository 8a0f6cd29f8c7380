package registry

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// DefaultPlatform is the platform picked from multi-platform images.
const DefaultPlatform = "linux/amd64"

const defaultJobs = 3

// Options configures remote registry access.
type Options struct {
	// Platform picked from an image index, "os/arch[/variant]"; default
	// linux/amd64.
	Platform string
	// Insecure lists registries ("host:port") reached over plain HTTP.
	// localhost, 127.0.0.1 and RFC 1918 addresses always are.
	Insecure []string
	// Keychain supplies credentials; default authn.DefaultKeychain, which
	// reads the docker config ($DOCKER_CONFIG, else ~/.docker/config.json):
	// auths, credHelpers and credsStore.
	Keychain authn.Keychain
	// Jobs is how many blobs move in parallel; default 3.
	Jobs int
	// Transport overrides the HTTP transport (CertsDir is then not read).
	// The default verifies TLS against the system roots (Go's crypto/x509
	// honours SSL_CERT_FILE and SSL_CERT_DIR) plus the registry's CAs from
	// CertsDir. Either way requests are retried (see transport.go).
	Transport http.RoundTripper
	// CertsDir is the Docker-style certs.d root: CertsDir/HOST:PORT/*.crt
	// are extra CAs for that registry, NAME.cert + NAME.key client
	// certificates. Default $STRATA_CERTS_DIR, else /etc/docker/certs.d.
	CertsDir string
	// Mirrors maps a registry ("docker.io", "host:port") to a mirror that
	// pulls try first, as dockerd's registry-mirrors: same repository path,
	// falling back to the registry itself when the mirror fails.
	Mirrors map[string]string
}

// PullOptions is the name docs/design.md uses for Options when pulling.
type PullOptions = Options

// PushOptions is the name docs/design.md uses for Options when pushing.
type PushOptions = Options

func (o Options) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return defaultJobs
}

// parseRef parses ref, marking its registry insecure when listed.
func (o Options) parseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	if slices.Contains(o.Insecure, r.Context().RegistryStr()) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
		}
	}
	return r, nil
}

// remoteOptions builds the go-containerregistry options of one operation;
// done releases the connections of the per-registry TLS transports.
func (o Options) remoteOptions(ctx context.Context) (opts []remote.Option, done func(), err error) {
	plat := o.Platform
	if plat == "" {
		plat = DefaultPlatform
	}
	p, err := v1.ParsePlatform(plat)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing platform %q: %w", plat, err)
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	base, done := o.baseTransport()
	opts = []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithPlatform(*p),
		remote.WithJobs(o.jobs()),
		remote.WithUserAgent("strata"),
		remote.WithTransport(newRetryTransport(base)),
		// retryTransport retries statuses and marks what it gave up on;
		// ggcr's own retries (whole uploads, network errors) use
		// shouldRetry, which skips those, so attempts do not multiply.
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(shouldRetry),
		remote.WithRetryBackoff(uploadBackoff()),
	}
	return opts, done, nil
}

// baseTransport is o.Transport, or one that applies certs.d per host.
func (o Options) baseTransport() (http.RoundTripper, func()) {
	if o.Transport != nil {
		return o.Transport, func() {}
	}
	t, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		t = http.DefaultTransport.(*http.Transport)
	}
	ht := newHostTransport(o.certsDir(), t)
	return ht, ht.close
}

// Pull fetches ref (tag or digest; from an index, the platform in o) into
// the store and tags it as ref. Every blob is verified against its digest
// while written; blobs already present are not fetched, so a pull that
// failed part way resumes where it stopped. Downloads that break off are
// retried. The manifest is stored byte for byte, so the image digest is
// the registry's, and only after every blob: its presence means the image
// is complete. The repository the blobs came from is recorded so pushes
// can mount them (see indexFile.Sources).
func (s *Store) Pull(ctx context.Context, ref string, o Options) (*Image, error) {
	r, err := o.parseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("pulling: %w", err)
	}
	opts, done, err := o.remoteOptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", r, err)
	}
	defer done()
	fail := func(what string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("pulling %s%s: %w", r, what, ctx.Err())
		}
		return fmt.Errorf("pulling %s%s: %w", r, what, describeRemoteError(err, r.Context().RegistryStr(), o.certsDir()))
	}

	var (
		rimg v1.Image
		from name.Reference
	)
	err = retryTransfer(ctx, func() error {
		var err error
		rimg, from, err = o.remoteImage(r, opts)
		if err != nil {
			return err
		}
		_, err = rimg.RawManifest()
		return err
	})
	if err != nil {
		return nil, fail("", err)
	}
	rawM, err := rimg.RawManifest()
	if err != nil {
		return nil, fail(" manifest", err)
	}
	md, err := rimg.Digest()
	if err != nil {
		return nil, fail(" manifest", err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawM))
	if err != nil {
		return nil, fmt.Errorf("pulling %s: parsing manifest: %w", r, err)
	}
	if mt, err := rimg.MediaType(); err != nil || !mt.IsImage() {
		return nil, fmt.Errorf("pulling %s: unsupported manifest media type %q", r, mt)
	}

	if !s.HasBlob(m.Config.Digest) {
		err := retryTransfer(ctx, func() error {
			rawCfg, err := rimg.RawConfigFile()
			if err != nil {
				return err
			}
			_, _, err = s.WriteBlob(ctx, bytes.NewReader(rawCfg), &m.Config.Digest)
			return err
		})
		if err != nil {
			return nil, fail(" config", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.jobs())
	seen := map[v1.Hash]bool{}
	for _, desc := range m.Layers {
		if seen[desc.Digest] || s.HasBlob(desc.Digest) {
			continue
		}
		seen[desc.Digest] = true
		g.Go(func() error {
			err := retryTransfer(gctx, func() error { return s.pullBlob(gctx, rimg, desc.Digest) })
			if err != nil {
				return fail(" layer "+desc.Digest.String(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// The manifest goes last: its presence means the image is complete.
	if _, _, err := s.WriteBlob(ctx, bytes.NewReader(rawM), &md); err != nil {
		return nil, fmt.Errorf("pulling %s manifest: %w", r, err)
	}
	img, err := s.Image(md)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", r, err)
	}
	repo := from.Context()
	if err := s.tag(ref, img, &repo, imageBlobs(img)); err != nil {
		return nil, fmt.Errorf("pulling %s: %w", r, err)
	}
	return img, nil
}

// remoteImage fetches r's manifest, from a mirror first when one is set
// for r's registry, and says which of the two it came from.
func (o Options) remoteImage(r name.Reference, opts []remote.Option) (v1.Image, name.Reference, error) {
	if m, ok := o.mirrorFor(r); ok {
		if img, err := remote.Image(m, opts...); err == nil {
			return img, m, nil
		}
	}
	img, err := remote.Image(r, opts...)
	return img, r, err
}

// mirrorFor rewrites r to its registry's mirror.
func (o Options) mirrorFor(r name.Reference) (name.Reference, bool) {
	reg := r.Context().RegistryStr()
	for from, to := range o.Mirrors {
		if from == "docker.io" {
			from = name.DefaultRegistry
		}
		if from != reg {
			continue
		}
		sep := ":"
		if _, ok := r.(name.Digest); ok {
			sep = "@"
		}
		m, err := o.parseRef(to + "/" + r.Context().RepositoryStr() + sep + r.Identifier())
		if err != nil {
			return nil, false
		}
		return m, true
	}
	return nil, false
}

func (s *Store) pullBlob(ctx context.Context, rimg v1.Image, d v1.Hash) error {
	l, err := rimg.LayerByDigest(d)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	// The remote's own context is the caller's; close the body so a sibling's
	// failure also interrupts a read blocked on the network.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	_, _, err = s.WriteBlob(ctx, rc, &d)
	return err
}

// Resolve returns ref from the local store, pulling it when absent.
func (s *Store) Resolve(ctx context.Context, ref string, o Options) (*Image, error) {
	img, ok, err := s.Lookup(ref)
	if err != nil {
		return nil, err
	}
	if ok {
		return img, nil
	}
	return s.Pull(ctx, ref, o)
}

// Push uploads img to ref. Blobs the registry already has are detected
// with HEAD requests and not uploaded again; for an image of the store
// (Store.V1), blobs recorded as present in another repository of the same
// registry are mounted from there. Uploads are retried (see transport.go)
// and the manifest is put only after every blob is in place, so a failed
// push never leaves the tag naming an incomplete image.
func Push(ctx context.Context, img v1.Image, ref string, o Options) error {
	r, err := o.parseRef(ref)
	if err != nil {
		return fmt.Errorf("pushing: %w", err)
	}
	opts, done, err := o.remoteOptions(ctx)
	if err != nil {
		return fmt.Errorf("pushing %s: %w", r, err)
	}
	defer done()
	si, fromStore := img.(*storeImage)
	if fromStore {
		if img, err = si.s.mountable(si, r.Context()); err != nil {
			return fmt.Errorf("pushing %s: %w", r, err)
		}
	}
	if err := remote.Write(r, img, opts...); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pushing %s: %w", r, ctx.Err())
		}
		return fmt.Errorf("pushing %s: %w", r, describeRemoteError(err, r.Context().RegistryStr(), o.certsDir()))
	}
	if fromStore {
		if local, err := si.s.Image(si.digest); err == nil {
			// Hints for later mounts; the push itself succeeded.
			_ = si.s.RecordSources(r.Context(), local)
		}
	}
	return nil
}
