package integration

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// e2eDockerfile exercises most instructions in one stage on the busybox base
// (named by the BASE build arg: a registry reference).
const e2eDockerfile = `ARG BASE
FROM ${BASE}
ARG BUILD_MSG=default-msg
ENV GREETING="hello world" OTHER=x
LABEL org.example.title="strata e2e" org.example.empty=""
WORKDIR /app
RUN echo created > /created.txt \
 && echo 'tester:x:1000:1000::/home/tester:/bin/sh' >> /etc/passwd \
 && rm /bin/vi \
 && rm -rf /usr/sbin && mkdir /usr/sbin && echo replaced > /usr/sbin/only
RUN mkdir -p /modes && cd /modes \
 && touch suid sgid plain owned && chmod 4755 suid && chmod 2755 sgid && chmod 0600 plain \
 && mkdir sticky && chmod 1777 sticky && chown 123:456 owned \
 && ln -s /etc/passwd abs-link && ln -s ../created.txt rel-link && ln -s nowhere dangling \
 && echo data > hard1 && ln hard1 hard2
RUN echo "$BUILD_MSG" > /buildarg && pwd > /pwd && echo "$GREETING" > /greeting
COPY file.txt /copied/
COPY dir/ /copied/dir/
COPY *.conf /confs/
COPY --chown=123:456 file.txt /chowned.txt
COPY --chmod=0640 file.txt /chmodded.txt
COPY ["with space.txt", "/dest dir/"]
COPY . /ctx/
ADD archive.tar.gz /extracted/
USER nobody
RUN id -u > /tmp/uid
EXPOSE 8080/tcp 53/udp
VOLUME /data
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD true
STOPSIGNAL SIGTERM
`

// e2eChecks are checked on the pushed image, flattened by umoci, in the
// expect format of the conformance corpus.
const e2eChecks = `
file /created.txt equals "created\n"
file /etc/passwd contains tester:x:1000:1000:
absent /bin/vi
symlink /bin/sh -> busybox
dir /usr/sbin entries only
file /usr/sbin/only equals "replaced\n"
mode /modes/suid 4755
mode /modes/sgid 2755
mode /modes/plain 0600
mode /modes/sticky 1777
owner /modes/owned 123:456
symlink /modes/abs-link -> /etc/passwd
symlink /modes/rel-link -> ../created.txt
symlink /modes/dangling -> nowhere
hardlink /modes/hard1 /modes/hard2
file /modes/hard2 equals "data\n"
file /buildarg equals "from-cli\n"
file /pwd equals "/app\n"
file /greeting equals "hello world\n"
dir /app entries
file /copied/file.txt equals "file\n"
dir /copied/dir entries a sub
file /copied/dir/sub/b equals "b\n"
dir /confs entries a.conf b.conf
owner /chowned.txt 123:456
mode /chowned.txt 0644
owner /copied/file.txt 0:0
mode /chmodded.txt 0640
file "/dest dir/with space.txt" equals "spaces\n"
file /ctx/file.txt equals "file\n"
absent /ctx/ignored.txt
absent /ctx/debug.log
file /ctx/sub.log.keep equals "kept\n"
dir /extracted entries top
file /extracted/top/inner.txt equals "inner\n"
mode /extracted/top/inner.txt 0640
owner /extracted/top/inner.txt 7:8
symlink /extracted/top/link -> inner.txt
file /tmp/uid equals "65534\n"
owner /tmp/uid 65534:65534
absent /etc/hosts
absent /etc/resolv.conf
absent /etc/hostname
dir /etc entries group passwd
dir /proc entries
dir /dev entries
dir /sys entries
env GREETING=hello world
env OTHER=x
env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
no-env BUILD_MSG
label org.example.title=strata e2e
label org.example.empty=
workdir /app
user nobody
exposed-ports 8080/tcp 53/udp
volumes /data
entrypoint ["/bin/sh","-c"]
cmd ["echo hi"]
healthcheck test ["CMD-SHELL","true"]
healthcheck interval 5s
healthcheck timeout 2s
healthcheck retries 4
stopsignal SIGTERM
`

func e2eContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":     e2eDockerfile,
		".dockerignore":  "ignored.txt\n*.log\n",
		"file.txt":       "file\n",
		"ignored.txt":    "must not be sent\n",
		"debug.log":      "must not be sent\n",
		"sub.log.keep":   "kept\n",
		"dir/a":          "a\n",
		"dir/sub/b":      "b\n",
		"a.conf":         "a\n",
		"b.conf":         "b\n",
		"with space.txt": "spaces\n",
	})
	writeTarGz(t, filepath.Join(dir, "archive.tar.gz"), []*tar.Header{
		{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "top/inner.txt", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 7, Gid: 8, Size: 6},
		{Name: "top/link", Typeflag: tar.TypeSymlink, Linkname: "inner.txt", Mode: 0o777},
	}, map[string]string{"top/inner.txt": "inner\n"})
	return dir
}

func writeTarGz(t *testing.T, file string, hdrs []*tar.Header, content map[string]string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, h := range hdrs {
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if c, ok := content[h.Name]; ok {
			if _, err := tw.Write([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []interface{ Close() error }{tw, gz, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBuildEndToEnd builds one image exercising most instructions, pushes it
// to the registry and reads it back with skopeo and umoci.
func TestBuildEndToEnd(t *testing.T) {
	f := needRoot(t)
	root := t.TempDir()
	ref := f.registry + "/e2e/full:v1"
	iid := filepath.Join(t.TempDir(), "iid")
	before := mounts(t)
	mustBuild(t, buildOpts{root: root, context: e2eContext(t), tags: []string{ref}, push: true, iidfile: iid,
		buildArgs: []string{"BASE=" + f.registry + "/library/busybox", "BUILD_MSG=from-cli"}})
	checkNoLeftovers(t, root, before)

	layout := filepath.Join(t.TempDir(), "oci")
	skopeoCopy(t, ref, layout, "v1")
	img := readLayout(t, layout, "v1")
	rootfs := umociUnpack(t, layout, "v1")

	t.Run("digest", func(t *testing.T) {
		b, err := os.ReadFile(iid)
		if err != nil {
			t.Fatal(err)
		}
		pushed := manifestDigest(t, ref)
		if got := strings.TrimSpace(string(b)); got != pushed || !strings.HasPrefix(got, "sha256:") {
			t.Errorf("--iidfile has %q, the registry serves %q", got, pushed)
		}
	})
	t.Run("files and config", func(t *testing.T) {
		exp, err := ParseExpect(strings.NewReader(e2eChecks))
		if err != nil {
			t.Fatal(err)
		}
		img.config = *readConfig(t, ref) // the config as the registry serves it
		c := &checker{cur: &phaseImage{img: img, rootfs: rootfs}}
		for _, a := range exp.Phases[0].Assertions {
			if err := c.check(a); err != nil {
				t.Errorf("%s: %v", a.Raw, err)
			}
		}
	})
	t.Run("layers", func(t *testing.T) {
		ids := img.config.RootFS.DiffIDs
		if len(ids) < 2 || ids[0] != f.busyboxDiffIDs[0] {
			t.Fatalf("diff_ids %q do not start with the busybox layer %q", ids, f.busyboxDiffIDs)
		}
		var all []string
		for i := 1; i < len(img.manifest.Layers); i++ {
			entries := img.layerEntries(t, i)
			all = append(all, entries...)
			for _, e := range entries {
				if e == "etc/hosts" || e == "etc/resolv.conf" || e == "etc/hostname" ||
					strings.HasPrefix(e, "proc/") || strings.HasPrefix(e, "dev/") || strings.HasPrefix(e, "sys/") {
					t.Errorf("layer %d has the runtime entry %q", i, e)
				}
			}
		}
		for _, want := range []string{"bin/.wh.vi", "usr/sbin/.wh..wh..opq", "modes/hard2"} {
			if !slices.Contains(all, want) {
				t.Errorf("no layer has the entry %q", want)
			}
		}
		top := img.layerEntries(t, -1)
		if !slices.Contains(top, "tmp/uid") {
			t.Errorf("top layer (RUN id -u) entries %q lack tmp/uid", top)
		}
	})
}
