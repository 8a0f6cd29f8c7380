package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/pflag"

	"github.com/strata-build/strata/registry"
)

// runPull fetches an image into the local store and prints its digest.
func runPull(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("pull", pflag.ContinueOnError)
	platform := fs.String("platform", "", "platform to pick from a multi-platform image (default linux/amd64)")
	insecure := fs.StringArray("insecure-registry", nil, "use plain HTTP for this HOST:PORT")
	mirrors := fs.StringArray("registry-mirror", nil, "pull REGISTRY's images from MIRROR first (REGISTRY=MIRROR)")
	jobs := fs.Int("jobs", 0, "layers downloaded at once (default 3)")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("pull takes exactly one IMAGE")
	}
	ref := fs.Arg(0)
	if err := registry.ValidateRef(ref); err != nil {
		return usagef("invalid reference %q: %v", ref, err)
	}
	mirrorMap, err := parseMirrors(*mirrors)
	if err != nil {
		return usageError{err}
	}
	// Blobs written before the tag must not be taken by a prune.
	defer holdStore(ctx, g)()
	s, err := registry.OpenStore(g.root)
	if err != nil {
		return err
	}
	img, err := s.Pull(ctx, ref, registry.Options{Platform: *platform, Insecure: *insecure, Mirrors: mirrorMap, Jobs: *jobs})
	if err != nil {
		return err
	}
	fmt.Println(img.Digest.String())
	return nil
}

// runRmi removes tags from the local store. The blobs stay until
// strata prune. A bare digest removes every tag naming that image.
func runRmi(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("rmi", pflag.ContinueOnError)
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() == 0 {
		return usagef("rmi takes at least one IMAGE")
	}
	defer holdStore(ctx, g)()
	s, err := registry.OpenStore(g.root)
	if err != nil {
		return err
	}
	var failed []string
	for _, ref := range fs.Args() {
		untagged, err := untag(s, ref)
		for _, u := range untagged {
			fmt.Printf("Untagged: %s\n", u)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			failed = append(failed, ref)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d images not removed: %s", len(failed), fs.NArg(), strings.Join(failed, ", "))
	}
	return nil
}

func untag(s *registry.Store, ref string) ([]string, error) {
	if strings.HasPrefix(ref, "sha256:") {
		d, err := v1.NewHash(ref)
		if err != nil {
			return nil, fmt.Errorf("invalid digest %q: %w", ref, err)
		}
		refs, err := s.List()
		if err != nil {
			return nil, err
		}
		var names []string
		for r, rd := range refs {
			if rd == d {
				names = append(names, r)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("no tag names image %s", ref)
		}
		sort.Strings(names)
		var done []string
		for _, n := range names {
			if err := s.Untag(n); err != nil {
				return done, err
			}
			done = append(done, n)
		}
		return done, nil
	}
	key, err := registry.NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	if err := s.Untag(ref); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return nil, fmt.Errorf("no such image in the local store: %s", ref)
		}
		return nil, err
	}
	return []string{key}, nil
}

// lookup finds IMAGE in the local store or says it is not there.
func lookup(s *registry.Store, ref string) (*registry.Image, error) {
	img, ok, err := s.Lookup(ref)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no such image in the local store: %s", ref)
	}
	return img, nil
}

func readAllBlob(s *registry.Store, d v1.Hash) ([]byte, error) {
	rc, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// inspectOutput is what strata inspect prints: the manifest and config as
// stored, byte for byte apart from indentation.
type inspectOutput struct {
	Ref      string
	Digest   string
	Manifest json.RawMessage
	Config   json.RawMessage
}

func runInspect(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("inspect", pflag.ContinueOnError)
	format := fs.StringP("format", "f", "json", "output format (json)")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("inspect takes exactly one IMAGE")
	}
	if *format != "json" {
		return usagef("unsupported --format %q (only json)", *format)
	}
	s, err := registry.OpenStore(g.root)
	if err != nil {
		return err
	}
	b, err := inspectJSON(s, fs.Arg(0))
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

// inspectJSON renders ref's manifest and config as strata inspect prints
// them.
func inspectJSON(s *registry.Store, ref string) ([]byte, error) {
	img, err := lookup(s, ref)
	if err != nil {
		return nil, err
	}
	out := inspectOutput{Ref: ref, Digest: img.Digest.String()}
	if !strings.HasPrefix(ref, "sha256:") {
		if out.Ref, err = registry.NormalizeRef(ref); err != nil {
			return nil, err
		}
	}
	if out.Manifest, err = readAllBlob(s, img.Digest); err != nil {
		return nil, err
	}
	if out.Config, err = readAllBlob(s, img.ConfigDigest); err != nil {
		return nil, err
	}
	return json.MarshalIndent(out, "", "  ")
}

// historyRow is one line of strata history.
type historyRow struct {
	created   time.Time
	createdBy string
	size      int64 // compressed size of the layer blob; 0 for config-only steps
	comment   string
}

// historyRows pairs the config's history with the layers (each entry that
// is not an empty layer made the next one), newest first as docker
// history prints. Layers beyond the history get rows of their own.
func historyRows(img *registry.Image) []historyRow {
	var rows []historyRow
	li := 0
	for _, h := range img.Config.History {
		r := historyRow{created: h.Created.Time, createdBy: h.CreatedBy, comment: h.Comment}
		if !h.EmptyLayer && li < len(img.Layers) {
			r.size = img.Layers[li].Size
			li++
		}
		rows = append(rows, r)
	}
	for ; li < len(img.Layers); li++ {
		rows = append(rows, historyRow{size: img.Layers[li].Size, createdBy: "<missing>"})
	}
	for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
		rows[i], rows[j] = rows[j], rows[i]
	}
	return rows
}

func runHistory(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("history", pflag.ContinueOnError)
	noTrunc := fs.Bool("no-trunc", false, "do not shorten CREATED BY")
	human := fs.BoolP("human", "H", true, "sizes and dates in human-readable form")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("history takes exactly one IMAGE")
	}
	s, err := registry.OpenStore(g.root)
	if err != nil {
		return err
	}
	img, err := lookup(s, fs.Arg(0))
	if err != nil {
		return err
	}
	return writeHistory(os.Stdout, historyRows(img), *noTrunc, *human, time.Now())
}

const createdByWidth = 45

func writeHistory(w io.Writer, rows []historyRow, noTrunc, human bool, now time.Time) error {
	// A multi-line RUN stays on one table row.
	tableSafe := strings.NewReplacer("\n", " ", "\r", " ", "\t", " ")
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "CREATED\tCREATED BY\tSIZE\tCOMMENT")
	for _, r := range rows {
		created := "<missing>"
		if !r.created.IsZero() {
			if human {
				created = units.HumanDuration(now.Sub(r.created)) + " ago"
			} else {
				created = r.created.UTC().Format(time.RFC3339)
			}
		}
		by := tableSafe.Replace(r.createdBy)
		if !noTrunc && len([]rune(by)) > createdByWidth {
			by = string([]rune(by)[:createdByWidth-1]) + "…"
		}
		size := fmt.Sprint(r.size)
		if human {
			size = units.HumanSizeWithPrecision(float64(r.size), 3)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", created, by, size, r.comment)
	}
	return tw.Flush()
}
