package integration

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultProxy is a reverse proxy on 127.0.0.1 in front of the shared
// docker-registry that injects faults and counts what goes through.
type faultProxy struct {
	addr     string
	upstream *url.URL
	proxy    *httputil.ReverseProxy

	mu sync.Mutex
	// Fault injection: a fraction of requests fails with 500/503/429 or a
	// connection cut mid-body (uploads and blob downloads); a further
	// fraction is merely slow. The same request (method, path without
	// upload id, body length) never fails more than twice in a row, so
	// that a push that retries succeeds whatever the draw.
	rate, slow float64
	rng        *rand.Rand
	streak     map[string]int
	// killUploadsAfter >= 0: blob upload sessions (POSTs) beyond that many
	// have their connection reset. killBlobGetsAfter likewise for blob
	// downloads.
	killUploadsAfter, killBlobGetsAfter int

	faults    int
	requests  int
	posts     int            // POST /v2/.../blobs/uploads/ (incl. mounts)
	mountPost int            // ... with ?mount=
	patches   int            // PATCH upload bodies
	commits   []string       // digests of upload commits the registry accepted
	blobGets  map[string]int // digest -> GET /v2/.../blobs/DIGEST
}

func startFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{
		upstream: u, rng: rand.New(rand.NewPCG(7, 11)), streak: map[string]int{},
		killUploadsAfter: -1, killBlobGetsAfter: -1, blobGets: map[string]int{},
	}
	quiet := log.New(io.Discard, "", 0)
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// Keep the proxy's Host so the registry's upload Locations
			// point back through the proxy.
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: p.observe,
		ErrorLog:       quiet,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ErrorLog: quiet, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.addr = l.Addr().String()
	return p
}

// set changes the fault configuration and zeroes the counters.
func (p *faultProxy) set(rate, slow float64, killUploadsAfter, killBlobGetsAfter int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate, p.slow = rate, slow
	p.killUploadsAfter, p.killBlobGetsAfter = killUploadsAfter, killBlobGetsAfter
	p.faults, p.requests, p.posts, p.mountPost, p.patches, p.commits = 0, 0, 0, 0, 0, nil
	p.blobGets = map[string]int{}
	p.streak = map[string]int{}
}

func isUploadPath(path string) bool { return strings.Contains(path, "/blobs/uploads/") }

func blobDigest(path string) string {
	if i := strings.Index(path, "/blobs/sha256:"); i >= 0 {
		return path[i+len("/blobs/"):]
	}
	return ""
}

// observe records what the registry accepted.
func (p *faultProxy) observe(resp *http.Response) error {
	r := resp.Request
	if r.Method == http.MethodPut && isUploadPath(r.URL.Path) && resp.StatusCode == http.StatusCreated {
		p.mu.Lock()
		p.commits = append(p.commits, r.URL.Query().Get("digest"))
		p.mu.Unlock()
	}
	return nil
}

type faultKind int

const (
	noFault faultKind = iota
	faultStatus
	faultCut
	faultKill
)

func (p *faultProxy) decide(r *http.Request) (kind faultKind, status int, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	upload := isUploadPath(r.URL.Path)
	digest := blobDigest(r.URL.Path)
	switch {
	case r.Method == http.MethodPost && upload:
		p.posts++
		if r.URL.Query().Get("mount") != "" {
			p.mountPost++
		}
		if p.killUploadsAfter >= 0 && p.posts > p.killUploadsAfter {
			return faultKill, 0, 0
		}
	case r.Method == http.MethodPatch:
		p.patches++
	case r.Method == http.MethodGet && digest != "":
		p.blobGets[digest]++
		n := 0
		for _, c := range p.blobGets {
			n += c
		}
		if p.killBlobGetsAfter >= 0 && n > p.killBlobGetsAfter {
			return faultCut, 0, 0
		}
	}
	path := r.URL.Path
	if i := strings.Index(path, "/blobs/uploads/"); i >= 0 {
		path = path[:i+len("/blobs/uploads/")]
	}
	key := fmt.Sprintf("%s %s %d", r.Method, path, r.ContentLength)
	if p.streak[key] < 2 && p.rng.Float64() < p.rate {
		p.streak[key]++
		p.faults++
		cuttable := r.Method == http.MethodPatch || (r.Method == http.MethodGet && digest != "")
		if cuttable && p.rng.IntN(2) == 0 {
			return faultCut, 0, 0
		}
		return faultStatus, []int{500, 503, 429}[p.rng.IntN(3)], 0
	}
	p.streak[key] = 0
	if p.rng.Float64() < p.slow {
		delay = time.Duration(20+p.rng.IntN(180)) * time.Millisecond
	}
	return noFault, 0, delay
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, status, delay := p.decide(r)
	switch kind {
	case faultKill:
		resetConn(w)
	case faultStatus:
		http.Error(w, "injected fault", status)
	case faultCut:
		if r.Method == http.MethodPatch {
			// Take part of the upload, then drop the connection.
			io.CopyN(io.Discard, r.Body, r.ContentLength/2)
			resetConn(w)
			return
		}
		p.cutDownload(w, r)
	default:
		if delay > 0 {
			time.Sleep(delay)
		}
		p.proxy.ServeHTTP(w, r)
	}
}

// cutDownload sends the headers and half of a blob, then resets.
func (p *faultProxy) cutDownload(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = p.upstream.Scheme, p.upstream.Host, ""
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		resetConn(w)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if resp.ContentLength > 1 {
		io.CopyN(w, resp.Body, resp.ContentLength/2)
	}
	http.NewResponseController(w).Flush()
	resetConn(w)
}

// resetConn drops the client's connection with a TCP reset.
func resetConn(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// uniqueRepo names a repository no earlier run used (the registry lives for
// the whole test binary, -count included).
func uniqueRepo(prefix string) string {
	b := make([]byte, 4)
	crand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// randomContext is a build context whose image has, on top of busybox, a
// layer per file of random bytes.
func randomContext(t *testing.T, from string, files int) string {
	t.Helper()
	dir := t.TempDir()
	df := "FROM " + from + "\n"
	for i := range files {
		b := make([]byte, 256<<10)
		crand.Read(b)
		name := fmt.Sprintf("blob%d.bin", i)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		df += "COPY " + name + " /" + name + "\n"
	}
	writeFiles(t, dir, map[string]string{"Dockerfile": df})
	return dir
}

// registryStatus asks the shared registry directly (not through the proxy).
func registryStatus(t *testing.T, method, path string) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+fx.registry+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestFaultProxyPushAndPull(t *testing.T) {
	f := needRoot(t)
	p := startFaultProxy(t, f.registry)
	root := t.TempDir()
	base := p.addr + "/library/busybox:latest"
	app := p.addr + "/" + uniqueRepo("fault/app") + ":1"

	// 30% of requests fail, another 10% are slow, for everything below.
	p.set(0.3, 0.1, -1, -1)
	mustSucceed(t, runStrata(t, root, "pull", base), "pull busybox through the faulty proxy")
	mustBuild(t, buildOpts{root: root, context: randomContext(t, base, 2), tags: []string{app}})
	pushed := mustSucceed(t, runStrata(t, root, "push", app), "push through the faulty proxy")
	p.mu.Lock()
	faults, requests, patches := p.faults, p.requests, p.patches
	p.mu.Unlock()
	if faults == 0 || patches == 0 {
		t.Fatalf("%d faults injected over %d uploads: the test tested nothing", faults, patches)
	}
	t.Logf("pull and push: %d of %d requests failed", faults, requests)

	direct := strings.Replace(app, p.addr, f.registry, 1)
	if got := manifestDigest(t, direct); got != pushed {
		t.Errorf("registry holds %s, push printed %s", got, pushed)
	}
	// Pull verifies every blob against its digest: intact both ways.
	if got := mustSucceed(t, runStrata(t, t.TempDir(), "pull", direct), "pull directly"); got != pushed {
		t.Errorf("direct pull got %s, pushed %s", got, pushed)
	}
	if got := mustSucceed(t, runStrata(t, t.TempDir(), "pull", app), "pull through the faulty proxy"); got != pushed {
		t.Errorf("pull through faults got %s, pushed %s", got, pushed)
	}

	// Pushing again, under the same tag and a new one, uploads nothing:
	// every blob is found with a HEAD first, faults or not.
	p.set(0.3, 0.1, -1, -1)
	again := strings.TrimSuffix(app, ":1") + ":2"
	mustSucceed(t, runStrata(t, root, "push", app), "re-push")
	mustSucceed(t, runStrata(t, root, "push", app, again), "push under a new tag")
	p.mu.Lock()
	posts := p.posts
	p.mu.Unlock()
	if posts != 0 {
		t.Errorf("re-push started %d blob uploads, want 0", posts)
	}
}

func TestFaultProxyMountsAcrossRepositories(t *testing.T) {
	f := needRoot(t)
	p := startFaultProxy(t, f.registry)
	root := t.TempDir()
	base := p.addr + "/library/busybox:latest"
	digest := mustSucceed(t, runStrata(t, root, "pull", base), "pull busybox")
	dst := p.addr + "/" + uniqueRepo("mounted/busybox") + ":1"
	p.set(0, 0, -1, -1)
	if got := mustSucceed(t, runStrata(t, root, "push", base, dst), "push to another repository"); got != digest {
		t.Errorf("push printed %s, want %s", got, digest)
	}
	p.mu.Lock()
	posts, mounts, patches := p.posts, p.mountPost, p.patches
	p.mu.Unlock()
	// Config and layer: both mounted from library/busybox, nothing sent.
	if mounts != 2 || posts != 2 || patches != 0 {
		t.Errorf("%d upload sessions, %d of them mounts, %d PATCHes; want 2 mounts and no PATCH", posts, mounts, patches)
	}
	direct := strings.Replace(dst, p.addr, f.registry, 1)
	if got := mustSucceed(t, runStrata(t, t.TempDir(), "pull", direct), "pull the mounted image"); got != digest {
		t.Errorf("pulled %s, want %s", got, digest)
	}
}

func TestFaultProxyInterruptedPush(t *testing.T) {
	f := needRoot(t)
	p := startFaultProxy(t, f.registry)
	root := t.TempDir()
	// Built on the shared registry's busybox: its layer is not recorded as
	// present on the proxy's address, so everything is a real upload.
	repo := uniqueRepo("interrupted/app")
	app := p.addr + "/" + repo + ":1"
	mustBuild(t, buildOpts{root: root, context: randomContext(t, f.registry+"/library/busybox:latest", 2), tags: []string{app}})

	p.set(0, 0, 1, -1) // every upload session after the first is reset
	r := runStrata(t, root, "push", app)
	if r.code == 0 {
		t.Fatalf("push succeeded although uploads were killed:\n%s", r)
	}
	t.Logf("interrupted push: %s", strings.TrimSpace(r.stderr))
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("error spans several lines:\n%s", r.stderr)
	}
	p.mu.Lock()
	commits := append([]string(nil), p.commits...)
	p.mu.Unlock()
	if len(commits) != 1 {
		t.Fatalf("%d blobs committed, want exactly the first: %v", len(commits), commits)
	}
	if got := registryStatus(t, http.MethodHead, "/v2/"+repo+"/blobs/"+commits[0]); got != http.StatusOK {
		t.Errorf("the one uploaded blob is not in the registry: HEAD %d", got)
	}
	if got := registryStatus(t, http.MethodHead, "/v2/"+repo+"/manifests/1"); got != http.StatusNotFound {
		t.Errorf("HEAD manifest after an interrupted push: %d, want 404", got)
	}

	// Healthy again: the push completes, uploading only what is missing.
	p.set(0, 0, -1, -1)
	pushed := mustSucceed(t, runStrata(t, root, "push", app), "push after the interruption")
	p.mu.Lock()
	posts := p.posts
	p.mu.Unlock()
	if posts != 3 { // busybox layer, two COPY layers, config: one was there
		t.Errorf("second push started %d uploads, want 3", posts)
	}
	if got := manifestDigest(t, fx.registry+"/"+repo+":1"); got != pushed {
		t.Errorf("registry holds %s, pushed %s", got, pushed)
	}
}

func TestFaultProxyPullResumes(t *testing.T) {
	f := needRoot(t)
	p := startFaultProxy(t, f.registry)
	repo := uniqueRepo("resume/app")
	direct := f.registry + "/" + repo + ":1"
	builder := t.TempDir()
	mustBuild(t, buildOpts{root: builder, context: randomContext(t, f.registry+"/library/busybox:latest", 2), tags: []string{direct}, push: true})
	var ins struct {
		Digest   string
		Manifest struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
	}
	if err := json.Unmarshal([]byte(mustSucceed(t, runStrata(t, builder, "inspect", direct), "inspect")), &ins); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	viaProxy := p.addr + "/" + repo + ":1"
	p.set(0, 0, -1, 1) // the first blob download (the config) gets through
	if r := runStrata(t, root, "pull", viaProxy); r.code == 0 {
		t.Fatalf("pull succeeded although downloads were cut:\n%s", r)
	}
	p.set(0, 0, -1, -1)
	if got := mustSucceed(t, runStrata(t, root, "pull", viaProxy), "resumed pull"); got != ins.Digest {
		t.Errorf("pulled %s, want %s", got, ins.Digest)
	}
	p.mu.Lock()
	gets := map[string]int{}
	for d, n := range p.blobGets {
		gets[d] = n
	}
	p.mu.Unlock()
	if n := gets[ins.Manifest.Config.Digest]; n != 0 {
		t.Errorf("resumed pull fetched the config again (%d times)", n)
	}
	for _, l := range ins.Manifest.Layers {
		if gets[l.Digest] != 1 {
			t.Errorf("resumed pull fetched layer %s %d times, want 1", l.Digest, gets[l.Digest])
		}
	}
}
