package copier

import (
	"archive/tar"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

const sentinel = "SENTINEL-HOST-SECRET"

// hostileEnv is one test's layout: base/{src,dst,host}. host stands for the
// rest of the machine; nothing there may be read into dst or changed.
type hostileEnv struct {
	base, src, dst, host string
	tmpName              string // a unique /tmp name that must never appear on the host
}

type hostileCase struct {
	name    string
	src     func(e hostileEnv) []node
	dst     func(e hostileEnv) []node
	req     func(e hostileEnv) Request
	wantErr string // "" = must succeed
	check   func(t *testing.T, e hostileEnv)
}

func TestHostileSourcesAndDestinations(t *testing.T) {
	requireRoot(t)
	none := func(hostileEnv) []node { return nil }
	file := func(hostileEnv) []node { return []node{F("f", "ctx-file")} }
	copyReq := func(dest string, sources ...string) func(hostileEnv) Request {
		return func(hostileEnv) Request { return Request{Sources: sources, Dest: dest} }
	}
	hasFile := func(p, content string) func(*testing.T, hostileEnv) {
		return func(t *testing.T, e hostileEnv) {
			t.Helper()
			got, err := os.ReadFile(filepath.Join(e.dst, p))
			if err != nil || string(got) != content {
				t.Fatalf("dst %s = %q, %v; want %q", p, got, err, content)
			}
		}
	}
	dotdotTar := func(t *testing.T) string {
		return string(makeTar(t, tarEntry{name: "../../evil", data: "evil", mode: 0o644}))
	}
	linkTar := func(t *testing.T) string {
		return string(makeTar(t,
			tarEntry{name: "/abs-evil", data: "abs", mode: 0o644},
			tarEntry{name: "esc", typ: tar.TypeSymlink, link: "/"},
			tarEntry{name: "esc/evil2", data: "via link", mode: 0o644},
			tarEntry{name: "up", typ: tar.TypeSymlink, link: "../../../.."},
			tarEntry{name: "up/evil3", data: "via up", mode: 0o644},
		))
	}
	cases := []hostileCase{
		{name: "dotdot to host passwd", src: none, req: copyReq("/p", "../../etc/passwd"), wantErr: "not found"},
		{name: "dotdot resolves in the context", src: func(hostileEnv) []node { return []node{F("etc/passwd", "ctx-passwd")} },
			req: copyReq("/p", "../../etc/passwd"), check: hasFile("p", "ctx-passwd")},
		{name: "absolute dotdot dir", src: none, req: copyReq("/o", "/../../etc"), wantErr: "not found"},
		{name: "relative path to the host dir", src: none, req: copyReq("/o", "../host/secret"), wantErr: "not found"},
		{name: "named link to /etc", src: func(hostileEnv) []node { return []node{L("link", "/etc")} },
			req: copyReq("/o", "link"), wantErr: "not found"},
		{name: "named link to /etc lands in the context etc",
			src: func(hostileEnv) []node { return []node{L("link", "/etc"), F("etc/passwd", "ctx")} },
			req: copyReq("/o", "link"), check: hasFile("o/passwd", "ctx")},
		{name: "named link to the absolute host path", src: func(e hostileEnv) []node { return []node{L("link", e.host+"/secret")} },
			req: copyReq("/o", "link"), wantErr: "not found"},
		{name: "link climbing to the root copies the context only",
			src: func(hostileEnv) []node { return []node{L("link", "../../../.."), F("a", "A")} },
			req: copyReq("/o", "link"), check: hasFile("o/a", "A")},
		{name: "path through a link to /etc", src: func(hostileEnv) []node { return []node{L("link", "/etc")} },
			req: copyReq("/o", "link/passwd"), wantErr: "not found"},
		{name: "path through a link climbing to the host dir",
			src: func(hostileEnv) []node { return []node{L("link", "../../host")} },
			req: copyReq("/o", "link/secret"), wantErr: "not found"},
		{name: "glob through a link climbing to the host dir",
			src: func(hostileEnv) []node { return []node{L("link", "../../host"), F("x", "X")} },
			req: copyReq("/o/", "link/*"), check: func(t *testing.T, e hostileEnv) {
				if _, err := os.Lstat(filepath.Join(e.dst, "o")); err == nil {
					t.Fatal("the glob matched something")
				}
			}},
		{name: "glob through a link climbing to the root",
			src: func(hostileEnv) []node { return []node{L("link", "../../.."), F("x", "X")} },
			req: copyReq("/o/", "link/x*"), check: hasFile("o/x", "X")},
		{name: "glob below a link to the host", src: func(e hostileEnv) []node { return []node{L("h", e.host), F("x", "X")} },
			req: copyReq("/o/", "*/secret"), check: func(t *testing.T, e hostileEnv) {
				if _, err := os.Lstat(filepath.Join(e.dst, "o")); err == nil {
					t.Fatal("a glob went through a symlink into the host")
				}
			}},
		{name: "glob naming a link to the host", src: func(e hostileEnv) []node { return []node{L("h", e.host+"/secret")} },
			req: copyReq("/o/", "h*"), wantErr: "not found"},
		{name: "links inside a copied dir are not followed",
			src: func(e hostileEnv) []node {
				return []node{L("d/esc", e.host+"/secret"), L("d/rel", "../../../host/secret"), F("d/f", "F")}
			},
			req: copyReq("/o", "d"), check: func(t *testing.T, e hostileEnv) {
				if target, err := os.Readlink(filepath.Join(e.dst, "o/esc")); err != nil || target != e.host+"/secret" {
					t.Fatalf("o/esc: %q, %v; want the symlink copied as is", target, err)
				}
			}},
		{name: "link loop", src: func(hostileEnv) []node { return []node{L("a", "b"), L("b", "a")} },
			req: copyReq("/o", "a"), wantErr: "not found"},
		{name: "dest climbing to host /tmp", src: file,
			req: func(e hostileEnv) Request {
				return Request{Sources: []string{"f"}, Dest: "../../../../tmp/" + e.tmpName}
			},
			check: func(t *testing.T, e hostileEnv) { hasFile("tmp/"+e.tmpName, "ctx-file")(t, e) }},
		{name: "workdir climbing", src: file,
			req:   func(hostileEnv) Request { return Request{Sources: []string{"f"}, Dest: "x", Workdir: "../../.."} },
			check: hasFile("x", "ctx-file")},
		{name: "dest through a link to /", src: file, dst: func(hostileEnv) []node { return []node{L("out", "/")} },
			req: copyReq("/out/x", "f"), check: hasFile("x", "ctx-file")},
		{name: "dest through a climbing link", src: file, dst: func(hostileEnv) []node { return []node{L("out", "../../..")} },
			req: copyReq("/out/host/secret", "f"), check: hasFile("host/secret", "ctx-file")},
		{name: "dest through a link to the host dir", src: file, dst: func(e hostileEnv) []node { return []node{L("out", e.host)} },
			req: copyReq("/out/", "f"), check: func(t *testing.T, e hostileEnv) { hasFile(e.host[1:]+"/f", "ctx-file")(t, e) }},
		{name: "dest file is a link to a host file", src: file,
			dst: func(e hostileEnv) []node { return []node{D("d"), L("d/f", e.host+"/secret")} },
			req: copyReq("/d/", "f"), check: hasFile("d/f", "ctx-file")},
		{name: "dest link loop", src: file, dst: func(hostileEnv) []node { return []node{L("loop", "loop")} },
			req: copyReq("/loop/x", "f"), wantErr: "resolving destination"},
		{name: "merge onto a subdir link to the host",
			src: func(hostileEnv) []node { return []node{F("d/sub/f", "F")} },
			dst: func(e hostileEnv) []node { return []node{L("o/sub", e.host)} },
			req: copyReq("/o", "d"), wantErr: "non-directory"},
		{name: "chown name with etc linked to host /etc", src: file,
			dst: func(hostileEnv) []node { return []node{L("etc", "/etc")} },
			req: func(hostileEnv) Request { return Request{Sources: []string{"f"}, Dest: "/f", Chown: "daemon"} }, wantErr: "daemon"},
		{name: "chown name with etc climbing to the host", src: file,
			dst:     func(hostileEnv) []node { return []node{L("etc", "../../host/etc")} },
			req:     func(hostileEnv) Request { return Request{Sources: []string{"f"}, Dest: "/f", Chown: "daemon"} },
			wantErr: "unable to find user daemon"},
		{name: "chown name with passwd linked to the host", src: file,
			dst:     func(e hostileEnv) []node { return []node{D("etc"), L("etc/passwd", e.host+"/etc/passwd")} },
			req:     func(hostileEnv) Request { return Request{Sources: []string{"f"}, Dest: "/f", Chown: "daemon"} },
			wantErr: "unable to find user daemon"},
		{name: "chown name through a link inside the root", src: file,
			dst: func(hostileEnv) []node {
				return []node{L("etc", "/real"), F("real/passwd", "daemon:x:77:88::/:/bin/sh\n")}
			},
			req: func(hostileEnv) Request { return Request{Sources: []string{"f"}, Dest: "/f", Chown: "daemon"} },
			check: func(t *testing.T, e hostileEnv) {
				fi, err := os.Lstat(filepath.Join(e.dst, "f"))
				if err != nil {
					t.Fatal(err)
				}
				if o := fileOwner(fi); o != (owner{77, 88}) {
					t.Fatalf("owner %v, want 77:88 from the root's own passwd", o)
				}
			}},
		{name: "ignored file named", src: func(hostileEnv) []node { return []node{F("secret.txt", "s")} },
			req: func(hostileEnv) Request {
				return Request{Sources: []string{"secret.txt"}, Dest: "/o", Ignore: []string{"secret.txt"}}
			}, wantErr: "not found"},
		{name: "ignored file behind a named link", src: func(hostileEnv) []node { return []node{F("secret.txt", "s"), L("l", "secret.txt")} },
			req: func(hostileEnv) Request {
				return Request{Sources: []string{"l"}, Dest: "/o", Ignore: []string{"*.txt"}}
			},
			wantErr: "not found"},
		{name: "inline name climbing",
			req: func(e hostileEnv) Request {
				return Request{Inline: []Inline{{Name: "../../../../tmp/" + e.tmpName, Data: []byte("x")}}, Dest: "/in/"}
			},
			check: func(t *testing.T, e hostileEnv) { hasFile("in/"+e.tmpName, "x")(t, e) }},
		{name: "parents with dotdot", src: none,
			req: func(hostileEnv) Request {
				return Request{Sources: []string{"../../../host/secret"}, Dest: "/o/", Parents: true}
			}, wantErr: "not found"},
		{name: "ADD archive with a dotdot entry",
			src:     func(hostileEnv) []node { return []node{F("evil.tar", dotdotTar(t))} },
			req:     func(hostileEnv) Request { return Request{Sources: []string{"evil.tar"}, Dest: "/x/", Add: true} },
			wantErr: "escapes"},
		{name: "ADD archive writing through its own links",
			src: func(hostileEnv) []node { return []node{F("evil.tar", linkTar(t))} },
			req: func(hostileEnv) Request { return Request{Sources: []string{"evil.tar"}, Dest: "/x/", Add: true} },
			check: func(t *testing.T, e hostileEnv) {
				hasFile("x/abs-evil", "abs")(t, e)
				hasFile("x/evil2", "via link")(t, e)
				hasFile("x/evil3", "via up")(t, e)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			e := hostileEnv{base: base, src: filepath.Join(base, "src"), dst: filepath.Join(base, "dst"),
				host: filepath.Join(base, "host"), tmpName: fmt.Sprintf("strata-hostile-%d", os.Getpid())}
			build(t, e.host, F("secret", sentinel), F("etc/passwd", "daemon:x:4242:4242::/:/bin/sh\n"+sentinel+"\n"))
			for _, d := range []string{e.src, e.dst} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.src != nil {
				build(t, e.src, tc.src(e)...)
			}
			if tc.dst != nil {
				build(t, e.dst, tc.dst(e)...)
			}
			hostBefore, srcBefore := dump(t, e.host), dump(t, e.src)
			req := tc.req(e)
			req.SrcRoot, req.DestRoot, req.FromContext = e.src, e.dst, true
			err := Copy(context.Background(), req)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Copy: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Copy error = %v, want one containing %q", err, tc.wantErr)
			}
			if d := diffLines(dump(t, e.host), hostBefore); d != "" {
				t.Fatalf("the host dir changed:\n%s", d)
			}
			if d := diffLines(dump(t, e.src), srcBefore); d != "" {
				t.Fatalf("the source root changed:\n%s", d)
			}
			names, err := os.ReadDir(base)
			if err != nil || len(names) != 3 {
				t.Fatalf("entries appeared next to the roots: %v %v", names, err)
			}
			if _, err := os.Lstat("/tmp/" + e.tmpName); err == nil {
				os.RemoveAll("/tmp/" + e.tmpName)
				t.Fatal("a file was written to the host /tmp")
			}
			assertNoHostData(t, e.dst)
			if tc.check != nil && tc.wantErr == "" {
				tc.check(t, e)
			}
		})
	}
}

// assertNoHostData fails if a regular file under root holds host content:
// the sentinel or the host's own /etc/passwd root line.
func assertNoHostData(t *testing.T, root string) {
	t.Helper()
	markers := []string{sentinel}
	if host, err := os.ReadFile("/etc/passwd"); err == nil {
		if line, _, _ := strings.Cut(string(host), "\n"); line != "" {
			markers = append(markers, line)
		}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(markers, func(m string) bool { return strings.Contains(string(data), m) }) {
			t.Errorf("%s holds host data", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func fileOwner(fi fs.FileInfo) owner {
	st := fi.Sys().(*syscall.Stat_t)
	return owner{st.Uid, st.Gid}
}
