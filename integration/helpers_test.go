package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// result is one run of the strata binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.code, r.stdout, r.stderr)
}

const commandTimeout = 10 * time.Minute

// strata runs the binary with --root root (when non-empty).
func strata(t *testing.T, root string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	r := runStrata(t, root, args...)
	return r.stdout, r.stderr, r.code
}

func runStrata(t *testing.T, root string, args ...string) result {
	t.Helper()
	return runStrataEnv(t, root, nil, args...)
}

// runStrataEnv runs the binary with extra environment variables (K=V).
func runStrataEnv(t *testing.T, root string, env []string, args ...string) result {
	t.Helper()
	return runStrataIO(t, root, env, "", args...)
}

// runStrataIO is runStrataEnv with text on standard input.
func runStrataIO(t *testing.T, root string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if root != "" {
		args = append([]string{"--root", root}, args...)
	}
	cmd := exec.CommandContext(ctx, fx.bin, args...)
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(append(os.Environ(), "STRATA_ROOT=/nonexistent-strata-root-must-not-be-used"), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if r.code < 0 {
			r.code = 128 // killed by a signal
		}
	default:
		t.Fatalf("running strata %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("strata %s did not finish within %s\n%s", strings.Join(args, " "), commandTimeout, r)
	}
	return r
}

// buildOpts describe one `strata build`.
type buildOpts struct {
	root       string
	context    string
	dockerfile string // -f (default CONTEXT/Dockerfile)
	tags       []string
	push       bool
	buildArgs  []string // K=V
	target     string
	noCache    bool
	outputs    []string
	iidfile    string
	mirror     bool // --registry-mirror docker.io=REGISTRY
	extra      []string
	env        []string // extra environment, K=V
}

func (o buildOpts) args() []string {
	args := []string{"build", "--progress=plain"}
	if o.dockerfile != "" {
		args = append(args, "-f", o.dockerfile)
	}
	for _, t := range o.tags {
		args = append(args, "-t", t)
	}
	if o.push {
		args = append(args, "--push")
	}
	for _, a := range o.buildArgs {
		args = append(args, "--build-arg", a)
	}
	if o.target != "" {
		args = append(args, "--target", o.target)
	}
	if o.noCache {
		args = append(args, "--no-cache")
	}
	for _, out := range o.outputs {
		args = append(args, "--output", out)
	}
	if o.iidfile != "" {
		args = append(args, "--iidfile", o.iidfile)
	}
	if o.mirror {
		args = append(args, "--registry-mirror", "docker.io="+fx.registry)
	}
	return append(append(args, o.extra...), o.context)
}

func build(t *testing.T, o buildOpts) result {
	t.Helper()
	return runStrataEnv(t, o.root, o.env, o.args()...)
}

// mustBuild builds and fails the test when the build fails.
func mustBuild(t *testing.T, o buildOpts) result {
	t.Helper()
	r := build(t, o)
	if r.code != 0 {
		t.Fatalf("strata %s failed:\n%s", strings.Join(o.args(), " "), r)
	}
	return r
}

// writeFiles creates files (name -> content) under dir; a name ending in
// "/" is a directory, content "->TARGET" makes a symlink.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(strings.TrimPrefix(content, "->"), p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// skopeoCopy copies a registry image into an OCI layout dir:tag.
func skopeoCopy(t *testing.T, ref, dir, tag string) {
	t.Helper()
	runTool(t, "skopeo", "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+dir+":"+tag)
}

// umociUnpack flattens the image dir:tag (as root: owners kept) and
// returns its rootfs, BUNDLE/rootfs. It uses `umoci raw unpack`, the layer
// application of `umoci unpack` without the runtime config.json: that one
// fails on images whose User is not in their /etc/passwd (a legal image,
// corpus case 053) and it skips the mtree manifest nobody here reads.
func umociUnpack(t *testing.T, dir, tag string) string {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "bundle")
	if err := os.Mkdir(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	runTool(t, "umoci", "raw", "unpack", "--image", dir+":"+tag, rootfs)
	return rootfs
}

// imageConfig is the part of an image config the tests look at.
type imageConfig struct {
	Author string `json:"author"`
	Config struct {
		Env          []string
		Labels       map[string]string
		WorkingDir   string
		User         string
		StopSignal   string
		Entrypoint   []string
		Cmd          []string
		Shell        []string
		OnBuild      []string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		Healthcheck  *struct {
			Test                           []string
			Interval, Timeout, StartPeriod time.Duration
			Retries                        int
		}
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// inspectConfig reads the config blob as pushed (--raw: without it skopeo
// re-encodes the OCI subset and drops Healthcheck, Shell, OnBuild).
func inspectConfig(ctx context.Context, ref string) (*imageConfig, error) {
	out, err := exec.CommandContext(ctx, "skopeo", "inspect", "--raw", "--config", "--tls-verify=false", "docker://"+ref).Output()
	if err != nil {
		return nil, fmt.Errorf("skopeo inspect --config %s: %v", ref, err)
	}
	var c imageConfig
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, fmt.Errorf("config of %s: %v", ref, err)
	}
	return &c, nil
}

// readConfig reads a pushed image's config with skopeo inspect --config.
func readConfig(t *testing.T, ref string) *imageConfig {
	t.Helper()
	c, err := inspectConfig(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// manifestDigest is the digest skopeo reports for a pushed image.
func manifestDigest(t *testing.T, ref string) string {
	t.Helper()
	var v struct{ Digest string }
	if err := json.Unmarshal([]byte(runTool(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)), &v); err != nil {
		t.Fatal(err)
	}
	return v.Digest
}

func envValue(env []string, key string) (string, bool) {
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
