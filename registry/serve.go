package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// Serve runs an OCI distribution registry (go-containerregistry's) on addr
// until ctx ends. Blobs are kept in blobDir when set, in memory otherwise;
// manifests are kept in memory. logw receives request logs (nil = none).
// ready, when non-nil, is called with the listening address.
func Serve(ctx context.Context, addr, blobDir string, logw *log.Logger, ready func(net.Addr)) error {
	opts := []ggcrregistry.Option{}
	if logw != nil {
		opts = append(opts, ggcrregistry.Logger(logw))
	} else {
		opts = append(opts, ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	}
	if blobDir != "" {
		if err := os.MkdirAll(blobDir, 0o755); err != nil {
			return fmt.Errorf("registry blob dir: %w", err)
		}
		opts = append(opts, ggcrregistry.WithBlobHandler(ggcrregistry.NewDiskBlobHandler(blobDir)))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("registry listen: %w", err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	srv := &http.Server{Handler: ggcrregistry.New(opts...), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
