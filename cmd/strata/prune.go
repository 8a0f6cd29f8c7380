package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/strata-build/strata/gc"
)

// holdStore takes the shared store lock for the rest of a command, so that
// a prune waits for the command instead of removing what it uses. Use it
// as `defer holdStore(ctx, g)()` right after parsing flags (so that --root
// is final) and before any other defer. A command must not run without
// the lock, so failing to take it ends the process here, with the exit
// statuses main uses.
func holdStore(ctx context.Context, g *globals) func() {
	release, err := gc.Use(ctx, g.root, func() {
		fmt.Fprintln(os.Stderr, "waiting for a running prune to finish")
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "strata: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	return release
}

func runPrune(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("prune", pflag.ContinueOnError)
	all := fs.Bool("all", false, "remove all build cache and cache mounts, not only dangling cache (tagged images stay)")
	keep := fs.String("keep-storage", "", "remove least recently used build cache until it takes at most SIZE (e.g. 10GB, 512MB, 2GiB)")
	dryRun := fs.Bool("dry-run", false, "print what would be removed, remove nothing")
	force := fs.BoolP("force", "f", false, "do not ask for confirmation")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 0 {
		return usagef("prune takes no arguments")
	}
	opts := gc.Options{All: *all, DryRun: *dryRun}
	if *keep != "" {
		if *all {
			return usagef("--all and --keep-storage do not go together")
		}
		n, err := parseSize(*keep)
		if err != nil {
			return usageError{err}
		}
		opts.KeepStorage = n
	}
	if !*force && !*dryRun {
		ok, err := confirm(ctx, pruneWarning(opts, *keep))
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(os.Stderr, "nothing removed")
			return nil
		}
	}
	opts.Waiting = func() { fmt.Fprintln(os.Stderr, "waiting for running builds to finish") }
	r, err := gc.Collect(ctx, g.root, opts)
	printPruned(os.Stdout, r, *dryRun)
	return err
}

func pruneWarning(o gc.Options, keep string) string {
	switch {
	case o.All:
		return "WARNING! This will remove all build cache, unpacked base image layers and cache mounts. Tagged images stay."
	case o.KeepStorage > 0:
		return fmt.Sprintf("WARNING! This will remove least recently used build cache above %s, and all dangling build cache.", keep)
	}
	return "WARNING! This will remove all dangling build cache and temporary leftovers."
}

// confirm asks on stderr and reads the answer from stdin; ctx (Ctrl-C)
// ends the wait.
func confirm(ctx context.Context, warning string) (bool, error) {
	fmt.Fprintf(os.Stderr, "%s\nAre you sure you want to continue? [y/N] ", warning)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		answer <- strings.ToLower(strings.TrimSpace(line))
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr)
		return false, ctx.Err()
	case a := <-answer:
		return a == "y" || a == "yes", nil
	}
}

// parseSize reads SIZE for --keep-storage: decimal units as du prints them
// (10GB = 10^10 bytes), binary ones when spelt so (2GiB = 2*2^30).
func parseSize(s string) (int64, error) {
	var n int64
	var err error
	if strings.ContainsAny(s, "iI") {
		n, err = units.RAMInBytes(s)
	} else {
		n, err = units.FromHumanSize(s)
	}
	if err != nil {
		return 0, fmt.Errorf("--keep-storage: %w", err)
	}
	if n <= 0 {
		return 0, fmt.Errorf("--keep-storage %s: must be more than 0 (to remove all build cache, use --all)", s)
	}
	return n, nil
}

// printPruned prints what a prune removed:
//
//	Deleted:
//	KIND      ID            SIZE     DESCRIPTION
//	entry     3f2a9c1d0b7e  4.096kB  RUN make
//	...
//
//	Total reclaimed space: 1.2MB
func printPruned(w io.Writer, r gc.Report, dryRun bool) {
	if len(r.Items) > 0 {
		if dryRun {
			fmt.Fprintln(w, "Would delete:")
		} else {
			fmt.Fprintln(w, "Deleted:")
		}
		rows := [][]string{{"KIND", "ID", "SIZE", "DESCRIPTION"}}
		for _, it := range r.Items {
			rows = append(rows, []string{string(it.Kind), shortID(it.ID), humanSize(it.Size), oneLine(it.Description)})
		}
		writeTable(w, rows)
		fmt.Fprintln(w)
	}
	if dryRun {
		fmt.Fprintf(w, "Total reclaimed space: %s (dry run: nothing was removed)\n", humanSize(r.Reclaimed))
		return
	}
	fmt.Fprintf(w, "Total reclaimed space: %s\n", humanSize(r.Reclaimed))
}

func runDu(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("du", pflag.ContinueOnError)
	verbose := fs.BoolP("verbose", "v", false, "list every item")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 0 {
		return usagef("du takes no arguments")
	}
	r, err := gc.Usage(ctx, g.root)
	if err != nil {
		return err
	}
	printUsage(os.Stdout, r, *verbose, time.Now())
	return nil
}

// printUsage prints the du table; with verbose, every item first:
//
//	CATEGORY        KIND      ID            SIZE    LAST USED     PRUNED BY     DESCRIPTION
//	build-cache     entry     3f2a9c1d0b7e  4.096kB 2 minutes ago  prune --all  RUN make
//
//	CATEGORY        COUNT  SIZE     RECLAIMABLE
//	images          1      2.1MB    0B
//	build cache     12     48.3MB   48.3MB
//	base snapshots  3      5.2MB    5.2MB
//	cache mounts    1      1.2MB    1.2MB
//	temp            0      0B       0B
//	total           17     57.1MB   55MB
//
//	Reclaimable by `strata prune`:       1.1MB
//	Reclaimable by `strata prune --all`: 55MB
func printUsage(w io.Writer, r gc.Report, verbose bool, now time.Time) {
	if verbose && len(r.Items) > 0 {
		rows := [][]string{{"CATEGORY", "KIND", "ID", "SIZE", "LAST USED", "PRUNED BY", "DESCRIPTION"}}
		for _, it := range r.Items {
			used := "-"
			if !it.LastUsed.IsZero() {
				used = units.HumanDuration(now.Sub(it.LastUsed)) + " ago"
			}
			by := "prune --all"
			switch {
			case it.Category == gc.Images:
				by = "-"
			case it.Dangling:
				by = "prune"
			}
			rows = append(rows, []string{string(it.Category), string(it.Kind), shortID(it.ID), humanSize(it.Size), used, by, oneLine(it.Description)})
		}
		writeTable(w, rows)
		fmt.Fprintln(w)
	}
	table := [][]string{{"CATEGORY", "COUNT", "SIZE", "RECLAIMABLE"}}
	rows := []struct {
		name        string
		s           gc.Space
		reclaimable bool
	}{
		{"images", r.Images, false},
		{"build cache", r.BuildCache, true},
		{"base snapshots", r.BaseSnapshots, true},
		{"cache mounts", r.CacheMounts, true},
		{"temp", r.Temp, true},
	}
	var total gc.Space
	for _, row := range rows {
		var rec int64
		if row.reclaimable {
			rec = row.s.Size
		}
		table = append(table, []string{row.name, fmt.Sprint(row.s.Count), humanSize(row.s.Size), humanSize(rec)})
		total.Count += row.s.Count
		total.Size += row.s.Size
	}
	table = append(table, []string{"total", fmt.Sprint(total.Count), humanSize(total.Size), humanSize(r.Reclaimable)})
	writeTable(w, table)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Reclaimable by `strata prune`:       %s\n", humanSize(r.Dangling))
	fmt.Fprintf(w, "Reclaimable by `strata prune --all`: %s\n", humanSize(r.Reclaimable))
}

// writeTable prints rows in aligned columns, two spaces apart, with no
// trailing blanks.
func writeTable(w io.Writer, rows [][]string) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if line != "" {
			fmt.Fprintln(w, strings.TrimRight(line, " \n"))
		}
	}
}

func humanSize(n int64) string { return units.HumanSize(float64(n)) }

var longHex = regexp.MustCompile(`[0-9a-f]{64}`)

// shortID shortens every 64-hex digest in id to 12 characters, as docker
// prints IDs.
func shortID(id string) string {
	return longHex.ReplaceAllStringFunc(id, func(h string) string { return h[:12] })
}

// oneLine keeps a multi-line RUN description on one table row.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
