package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestTagLookupNormalisation(t *testing.T) {
	s := newStore(t)
	img, err := s.WriteImage(context.Background(), testConfig(), writeTestLayers(t, s, 1, Gzip), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("busybox", img); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref   string
		found bool
	}{
		{"busybox", true},
		{"busybox:latest", true},
		{"library/busybox", true},
		{"docker.io/library/busybox:latest", true},
		{"index.docker.io/library/busybox:latest", true},
		{"busybox:1.36", false},
		{"example.com/busybox", false},
		{img.Digest.String(), true},
		{"busybox@" + img.Digest.String(), true},
		{"example.com/other@" + img.Digest.String(), true}, // content addressed: any repo
		{"busybox@" + sha([]byte("absent")).String(), false},
		{sha([]byte("absent")).String(), false},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			got, ok, err := s.Lookup(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.found {
				t.Fatalf("found = %v, want %v", ok, tc.found)
			}
			if ok && got.Digest != img.Digest {
				t.Errorf("digest %s, want %s", got.Digest, img.Digest)
			}
		})
	}

	for _, bad := range []string{"UPPER/case", "sha256:zz", ""} {
		if _, _, err := s.Lookup(bad); err == nil {
			t.Errorf("Lookup(%q) accepted a malformed reference", bad)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	tests := map[string]string{
		"busybox":                           "index.docker.io/library/busybox:latest",
		"docker.io/library/busybox":         "index.docker.io/library/busybox:latest",
		"localhost:5000/app:v1":             "localhost:5000/app:v1",
		"ghcr.io/org/app@sha256:" + testHex: "ghcr.io/org/app@sha256:" + testHex,
	}
	for in, want := range tests {
		got, err := NormalizeRef(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeRef("sha256:" + testHex); err == nil {
		t.Error("NormalizeRef accepted a bare digest")
	}
}

const testHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestTagUntagList(t *testing.T) {
	s := newStore(t)
	img, err := s.WriteImage(context.Background(), testConfig(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b:1", "localhost:5000/c"} {
		if err := s.Tag(r, img); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"index.docker.io/library/a:latest", "index.docker.io/library/b:1", "localhost:5000/c:latest"}
	if len(list) != len(want) {
		t.Fatalf("List() = %v", list)
	}
	for _, k := range want {
		if list[k] != img.Digest {
			t.Errorf("List()[%s] = %s", k, list[k])
		}
	}
	if err := s.Untag("docker.io/library/a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Lookup("a"); ok {
		t.Error("a still found after Untag")
	}
	if err := s.Untag("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Untag err = %v, want ErrNotFound", err)
	}
	// The image itself is still addressable by digest.
	if _, ok, _ := s.Lookup(img.Digest.String()); !ok {
		t.Error("image gone after Untag")
	}
	// Tagging a manifest that is not stored fails.
	ghost := *img
	ghost.Digest = sha([]byte("ghost"))
	if err := s.Tag("ghost", &ghost); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tag(missing manifest) err = %v", err)
	}
}

func TestTagConcurrent(t *testing.T) {
	root := t.TempDir()
	img := func() *Image {
		s, err := OpenStore(root)
		if err != nil {
			t.Fatal(err)
		}
		i, err := s.WriteImage(context.Background(), testConfig(), nil, true)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Separate Store values, as separate processes would have.
			s, err := OpenStore(root)
			if err == nil {
				err = s.Tag(fmt.Sprintf("img%d", i), img)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, _ := OpenStore(root)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Errorf("%d tags survived concurrent tagging, want %d", len(list), n)
	}
}
