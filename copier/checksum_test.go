package copier

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestChecksum(t *testing.T) {
	requireRoot(t)
	tree := []node{
		F("app/main.go", "package main"), FM("app/run.sh", "#!/bin/sh", 0o755), L("app/link", "main.go"),
		D("app/empty"), F("app/ignored.log", "log"), F("app/skip.tmp", "tmp"), F("other", "o"), F("app/copy", "package main"),
	}
	base := Request{Sources: []string{"app"}, Ignore: []string{"**/*.log"}, Excludes: []string{"*.tmp"}, FromContext: true}
	tests := []struct {
		name   string
		mutate func(t *testing.T, root string)
		req    func(r Request) Request
		same   bool
	}{
		{name: "nothing changed", mutate: func(*testing.T, string) {}, same: true},
		{name: "mtime changed", same: true, mutate: func(t *testing.T, root string) {
			setTestTime(t, filepath.Join(root, "app/main.go"), time.Unix(1, 0))
			setTestTime(t, filepath.Join(root, "app"), time.Unix(2, 0))
		}},
		{name: "ignored file changed", same: true, mutate: write("app/ignored.log", "new log")},
		{name: "ignored file added", same: true, mutate: write("app/more.log", "x")},
		{name: "excluded file changed", same: true, mutate: write("app/skip.tmp", "changed")},
		{name: "unselected file changed", same: true, mutate: write("other", "changed")},
		{name: "context owner changed", same: true, mutate: chown("app/main.go", 7, 7)},
		{name: "stage owner changed", mutate: chown("app/main.go", 7, 7),
			req: func(r Request) Request { r.FromContext = false; return r }},
		{name: "content changed", mutate: write("app/main.go", "package other")},
		{name: "content changed, same size", mutate: write("app/main.go", "package mai_")},
		{name: "mode changed", mutate: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "app/run.sh"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "nested dir mode changed", mutate: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "app/empty"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file added", mutate: write("app/new", "")},
		{name: "file renamed", mutate: func(t *testing.T, root string) {
			if err := os.Rename(filepath.Join(root, "app/copy"), filepath.Join(root, "app/copy2")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlink target changed", mutate: func(t *testing.T, root string) {
			p := filepath.Join(root, "app/link")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("run.sh", p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "copy became a hard link", mutate: func(t *testing.T, root string) {
			p := filepath.Join(root, "app/copy")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(filepath.Join(root, "app/main.go"), p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "other source order", mutate: func(*testing.T, string) {},
			req: func(r Request) Request { r.Sources = []string{"app", "other"}; return r }},
		{name: "inline added", mutate: func(*testing.T, string) {},
			req: func(r Request) Request { r.Inline = []Inline{{Name: "x", Data: []byte("y")}}; return r }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two roots at different places: the digest must not depend on where.
			a, b := t.TempDir(), t.TempDir()
			build(t, a, tree...)
			build(t, b, tree...)
			reqA, reqB := base, base
			reqA.SrcRoot, reqB.SrcRoot = a, b
			if tt.req != nil {
				reqB = tt.req(reqB)
			}
			tt.mutate(t, b)
			da, err := Checksum(context.Background(), reqA)
			if err != nil {
				t.Fatal(err)
			}
			db, err := Checksum(context.Background(), reqB)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(da) {
				t.Fatalf("digest %q is not sha256:HEX", da)
			}
			if (da == db) != tt.same {
				t.Fatalf("digests %s and %s: same = %v, want %v", da, db, da == db, tt.same)
			}
		})
	}
}

func TestChecksumInlineAndErrors(t *testing.T) {
	root := t.TempDir()
	build(t, root, F("f", "x"))
	sum := func(req Request) string {
		t.Helper()
		req.SrcRoot = root
		d, err := Checksum(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	one := sum(Request{Inline: []Inline{{Name: "a", Data: []byte("1")}}})
	if one == sum(Request{Inline: []Inline{{Name: "a", Data: []byte("2")}}}) {
		t.Error("inline data change kept the digest")
	}
	if one == sum(Request{Inline: []Inline{{Name: "b", Data: []byte("1")}}}) {
		t.Error("inline name change kept the digest")
	}
	if one != sum(Request{Inline: []Inline{{Name: "a", Data: []byte("1")}}}) {
		t.Error("digest not deterministic")
	}
	// Field boundaries are length-prefixed: moving a byte between name and
	// data changes the digest.
	if sum(Request{Inline: []Inline{{Name: "ab", Data: []byte("c")}}}) == sum(Request{Inline: []Inline{{Name: "a", Data: []byte("bc")}}}) {
		t.Error("ambiguous encoding")
	}
	if sum(Request{Sources: []string{"nomatch*"}}) != sum(Request{}) {
		t.Error("an empty glob should select nothing")
	}
	_, err := Checksum(context.Background(), Request{SrcRoot: root, Sources: []string{"missing"}})
	if err == nil || !strings.Contains(err.Error(), `"/missing": not found`) {
		t.Fatalf("Checksum of a missing source: %v", err)
	}
	_, err = Checksum(context.Background(), Request{SrcRoot: root, Sources: []string{"f"}, Ignore: []string{"f"}})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Checksum of an ignored source: %v", err)
	}
}

func write(rel, data string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func chown(rel string, uid, gid int) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if err := os.Lchown(filepath.Join(root, rel), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}
