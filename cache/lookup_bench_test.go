package cache

import (
	"fmt"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BenchmarkLookupChain measures what a no-op rebuild of a 30-step
// Dockerfile costs the cache: deriving each step's key from its parent and
// reading its entry, in a store that already holds many other entries.
func BenchmarkLookupChain(b *testing.B) {
	for _, others := range []int{0, 10000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			l, err := OpenLocal(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < others; i++ {
				if err := l.Put(Entry{Key: Key("other", fmt.Sprint(i)), Empty: true}); err != nil {
					b.Fatal(err)
				}
			}
			const steps = 30
			parent := Key("image", "sha256:base")
			for i := 0; i < steps; i++ {
				k := Key(parent, "RUN", fmt.Sprintf("echo step %d", i))
				e := Entry{Key: k, Snapshot: k, History: v1.History{CreatedBy: fmt.Sprintf("RUN echo step %d", i)},
					Layer: &Layer{Digest: "sha256:" + k, DiffID: "sha256:" + k, Size: 123, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}}
				if err := l.Put(e); err != nil {
					b.Fatal(err)
				}
				parent = k
			}
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				parent := Key("image", "sha256:base")
				for i := 0; i < steps; i++ {
					k := Key(parent, "RUN", fmt.Sprintf("echo step %d", i))
					if _, ok, err := l.Get(k); err != nil || !ok {
						b.Fatalf("step %d: ok=%v err=%v", i, ok, err)
					}
					parent = k
				}
			}
		})
	}
}
