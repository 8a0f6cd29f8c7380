package dockerfile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// corpusDir is the shared conformance corpus, relative to this package.
const corpusDir = "../../shared/conformance/cases"

// fakeResolver knows the two corpus base images.
type fakeResolver struct {
	mu    sync.Mutex
	calls []string
}

func busyboxConfig() *v1.ConfigFile {
	return &v1.ConfigFile{
		Architecture: "amd64", OS: "linux",
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}}},
		Config: v1.Config{Env: []string{"PATH=" + defaultPath}, Cmd: []string{"/bin/sh"}},
	}
}

func debianConfig() *v1.ConfigFile {
	c := busyboxConfig()
	c.RootFS.DiffIDs[0].Hex = strings.Repeat("b", 64)
	c.Config.Cmd = []string{"bash"}
	return c
}

func (r *fakeResolver) ResolveImageConfig(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	r.mu.Lock()
	r.calls = append(r.calls, ref)
	r.mu.Unlock()
	switch ref {
	case "busybox", "busybox:latest", "docker.io/library/busybox:latest":
		return busyboxConfig(), nil
	case "debian:bookworm", "docker.io/library/debian:bookworm":
		return debianConfig(), nil
	}
	return nil, fmt.Errorf("%s: not found", ref)
}

// phase is one build of a case: options, then assertions.
type phase struct {
	buildArgs  map[string]string
	target     string
	dockerfile string
	asserts    [][2]string // keyword, rest of line
}

// configKeywords are the assertions a plan can answer.
var configKeywords = map[string]bool{
	"env": true, "no-env": true, "label": true, "no-label": true, "workdir": true,
	"user": true, "stopsignal": true, "author": true, "entrypoint": true, "cmd": true,
	"shell": true, "onbuild": true, "expose": true, "exposed-ports": true,
	"volume": true, "volumes": true, "healthcheck": true, "error": true, "error-line": true,
}

// runtimeErrors are cases whose expected failure happens while running a
// step (a command fails, a source is missing), after planning succeeded.
var runtimeErrors = map[string]bool{
	"057": true, "068": true, "082": true, "083": true, "084": true,
	"087": true, "098": true, "099": true,
}

// readExpect reads the phases of an expect file; options carry over.
func readExpect(t *testing.T, file string) []phase {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cur := phase{buildArgs: map[string]string{}, dockerfile: "Dockerfile"}
	var out []phase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kw, rest, _ := strings.Cut(line, " ")
		switch kw {
		case "rebuild":
			out = append(out, cur)
			cur = phase{buildArgs: maps.Clone(cur.buildArgs), target: cur.target, dockerfile: cur.dockerfile}
		case "build-arg":
			k, v, _ := strings.Cut(rest, "=")
			cur.buildArgs[k] = text(v)
		case "target":
			cur.target = rest
		case "dockerfile":
			cur.dockerfile = rest
		case "no-cache", "write", "remove", "rename":
		default:
			cur.asserts = append(cur.asserts, [2]string{kw, rest})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return append(out, cur)
}

// text decodes a TEXT argument: Go-quoted or literal.
func text(s string) string {
	if strings.HasPrefix(s, `"`) {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	return strings.TrimRight(s, " \t")
}

func TestCorpus(t *testing.T) {
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Skipf("corpus not available: %v", err)
	}
	checked := 0
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "-")
		dir := filepath.Join(corpusDir, e.Name())
		t.Run(e.Name(), func(t *testing.T) {
			for i, ph := range readExpect(t, filepath.Join(dir, "expect")) {
				if n := runPhase(t, dir, num, i, ph); n > 0 {
					checked += n
				}
			}
		})
	}
	if checked < 100 {
		t.Errorf("only %d corpus assertions checked", checked)
	}
}

// runPhase plans one phase and checks its config and error assertions.
// It returns how many assertions it checked.
func runPhase(t *testing.T, dir, num string, i int, ph phase) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ph.dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	wantErr := false
	for _, a := range ph.asserts {
		wantErr = wantErr || a[0] == "error"
	}
	plan, err := planBytes(data, Options{BuildArgs: ph.buildArgs, Target: ph.target, Resolver: &fakeResolver{}})
	if wantErr && err == nil && runtimeErrors[num] {
		return 0
	}
	if wantErr {
		if err == nil {
			t.Fatalf("phase %d: expected an error, plan succeeded", i)
		}
		var de *Error
		if !errors.As(err, &de) {
			t.Fatalf("phase %d: error %v is %T, not *Error", i, err, err)
		}
		n := 0
		for _, a := range ph.asserts {
			switch a[0] {
			case "error":
				if a[1] != "" && !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(text(a[1]))) {
					t.Errorf("phase %d: error %q lacks %q", i, err, text(a[1]))
				}
			case "error-line":
				lo, hi, _ := strings.Cut(a[1], "-")
				if hi == "" {
					hi = lo
				}
				l, _ := strconv.Atoi(lo)
				h, _ := strconv.Atoi(hi)
				if de.Loc.Line < l || de.Loc.Line > h {
					t.Errorf("phase %d: error at line %d, want %s: %v", i, de.Loc.Line, a[1], err)
				}
			}
			n++
		}
		return n
	}
	if err != nil {
		t.Fatalf("phase %d: %v", i, err)
	}
	n := 0
	for _, a := range ph.asserts {
		if !configKeywords[a[0]] {
			continue
		}
		if msg := checkConfig(plan.Target.Config, a[0], a[1]); msg != "" {
			t.Errorf("phase %d: %s %s: %s", i, a[0], a[1], msg)
		}
		n++
	}
	return n
}

func planBytes(data []byte, opts Options) (*Plan, error) {
	df, err := Parse("Dockerfile", data)
	if err != nil {
		return nil, err
	}
	return df.Plan(context.Background(), opts)
}

// checkConfig checks one config assertion; "" means it holds.
func checkConfig(cf *v1.ConfigFile, kw, arg string) string {
	c := cf.Config
	eq := func(got, want string) string {
		if got != want {
			return fmt.Sprintf("got %q, want %q", got, want)
		}
		return ""
	}
	switch kw {
	case "env":
		if !slices.Contains(c.Env, text(arg)) {
			return fmt.Sprintf("not in %q", c.Env)
		}
	case "no-env":
		for _, e := range c.Env {
			if k, _, _ := strings.Cut(e, "="); k == arg {
				return fmt.Sprintf("present: %q", e)
			}
		}
	case "label":
		k, v, _ := strings.Cut(text(arg), "=")
		got, ok := c.Labels[k]
		if !ok {
			return "missing"
		}
		return eq(got, v)
	case "no-label":
		if _, ok := c.Labels[arg]; ok {
			return "present"
		}
	case "workdir":
		return eq(c.WorkingDir, text(arg))
	case "user":
		return eq(c.User, text(arg))
	case "stopsignal":
		return eq(c.StopSignal, text(arg))
	case "author":
		return eq(cf.Author, text(arg))
	case "entrypoint":
		return jsonEq(c.Entrypoint, arg)
	case "cmd":
		return jsonEq(c.Cmd, arg)
	case "shell":
		return jsonEq(c.Shell, arg)
	case "onbuild":
		return jsonEq(c.OnBuild, arg)
	case "expose":
		if _, ok := c.ExposedPorts[arg]; !ok {
			return fmt.Sprintf("not in %v", slices.Sorted(maps.Keys(c.ExposedPorts)))
		}
	case "exposed-ports":
		return setEq(c.ExposedPorts, strings.Fields(arg))
	case "volume":
		if _, ok := c.Volumes[arg]; !ok {
			return fmt.Sprintf("not in %v", slices.Sorted(maps.Keys(c.Volumes)))
		}
	case "volumes":
		return setEq(c.Volumes, strings.Fields(arg))
	case "healthcheck":
		return checkHealth(c.Healthcheck, arg)
	default:
		return "unknown keyword"
	}
	return ""
}

func jsonEq(got []string, want string) string {
	var w []string
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return "bad JSON in expect: " + err.Error()
	}
	if len(got) == 0 && len(w) == 0 {
		return ""
	}
	if !slices.Equal(got, w) {
		return fmt.Sprintf("got %q, want %q", got, w)
	}
	return ""
}

func setEq(got map[string]struct{}, want []string) string {
	g := slices.Sorted(maps.Keys(got))
	slices.Sort(want)
	if !slices.Equal(g, want) {
		return fmt.Sprintf("got %v, want %v", g, want)
	}
	return ""
}

func checkHealth(h *v1.HealthConfig, arg string) string {
	if h == nil {
		h = &v1.HealthConfig{}
	}
	field, val, _ := strings.Cut(arg, " ")
	durEq := func(got time.Duration) string {
		want, err := time.ParseDuration(val)
		if err != nil {
			return "bad duration in expect"
		}
		if got != want {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	}
	switch field {
	case "test":
		return jsonEq(h.Test, val)
	case "interval":
		return durEq(h.Interval)
	case "timeout":
		return durEq(h.Timeout)
	case "start-period":
		return durEq(h.StartPeriod)
	case "retries":
		if strconv.Itoa(h.Retries) != val {
			return fmt.Sprintf("got %d, want %s", h.Retries, val)
		}
		return ""
	}
	return "unknown healthcheck field " + field
}
