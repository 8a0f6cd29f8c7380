package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// checker evaluates expect assertions against one built image.
type checker struct {
	cur, prev  *phaseImage
	baseLayers int
}

func (c *checker) check(a Assertion) error {
	switch a.Kind {
	case "exists", "absent", "file", "dir", "symlink", "hardlink", "mode", "owner":
		return c.checkFS(a)
	case "same", "differs":
		return c.checkCache(a)
	case "layers", "top-layer":
		return c.checkLayers(a)
	}
	return c.checkConfig(a)
}

// lstat resolves an image path in rootfs and lstats it.
func lstat(rootfs, p string) (string, os.FileInfo, error) {
	host, err := resolveIn(rootfs, p)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Lstat(host)
	return host, fi, err
}

func notExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func kind(fi os.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&os.ModeSymlink != 0:
		return "symlink"
	}
	return fi.Mode().Type().String()
}

func (c *checker) checkFS(a Assertion) error {
	host, fi, err := lstat(c.cur.rootfs, a.Path)
	if a.Kind == "absent" {
		if err == nil {
			return fmt.Errorf("%s exists (%s)", a.Path, kind(fi))
		}
		if notExist(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch a.Kind {
	case "exists":
		return nil
	case "file":
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is a %s, not a regular file", a.Path, kind(fi))
		}
		if a.Sub == "" {
			return nil
		}
		b, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		return checkContent(a, b)
	case "dir":
		if !fi.IsDir() {
			return fmt.Errorf("%s is a %s, not a directory", a.Path, kind(fi))
		}
		if a.Sub == "" {
			return nil
		}
		ents, err := os.ReadDir(host)
		if err != nil {
			return err
		}
		got := []string{}
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if want := sortedCopy(a.Names); !reflect.DeepEqual(sortedCopy(got), want) {
			return fmt.Errorf("entries %q, want %q", sortedCopy(got), want)
		}
	case "symlink":
		if fi.Mode()&os.ModeSymlink == 0 {
			return fmt.Errorf("%s is a %s, not a symlink", a.Path, kind(fi))
		}
		l, err := os.Readlink(host)
		if err != nil {
			return err
		}
		if l != a.Text {
			return fmt.Errorf("%s -> %q, want -> %q", a.Path, l, a.Text)
		}
	case "hardlink":
		_, fi2, err := lstat(c.cur.rootfs, a.Path2)
		if err != nil {
			return err
		}
		st2 := fi2.Sys().(*syscall.Stat_t)
		if st.Dev != st2.Dev || st.Ino != st2.Ino {
			return fmt.Errorf("%s (inode %d, %d links) and %s (inode %d, %d links) are different files",
				a.Path, st.Ino, st.Nlink, a.Path2, st2.Ino, st2.Nlink)
		}
	case "mode":
		if got := int64(st.Mode & 0o7777); got != a.Num {
			return fmt.Errorf("mode %04o, want %04o", got, a.Num)
		}
	case "owner":
		got := fmt.Sprintf("%d:%d", st.Uid, st.Gid)
		if (a.UID != "*" && a.UID != strconv.Itoa(int(st.Uid))) || (a.GID != "*" && a.GID != strconv.Itoa(int(st.Gid))) {
			return fmt.Errorf("owner %s, want %s:%s", got, a.UID, a.GID)
		}
	}
	return nil
}

func checkContent(a Assertion, b []byte) error {
	s := string(b)
	switch a.Sub {
	case "equals":
		if s != a.Text {
			return fmt.Errorf("content %s, want %s", quoteShort(s), quoteShort(a.Text))
		}
	case "contains":
		if !strings.Contains(s, a.Text) {
			return fmt.Errorf("content %s does not contain %q", quoteShort(s), a.Text)
		}
	case "not-contains":
		if strings.Contains(s, a.Text) {
			return fmt.Errorf("content %s contains %q", quoteShort(s), a.Text)
		}
	case "matches":
		if !a.Re.Match(b) {
			return fmt.Errorf("content %s does not match %q", quoteShort(s), a.Text)
		}
	case "size":
		if int64(len(b)) != a.Num {
			return fmt.Errorf("size %d, want %d", len(b), a.Num)
		}
	case "sha256":
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != a.Text {
			return fmt.Errorf("sha256:%s, want sha256:%s", got, a.Text)
		}
	}
	return nil
}

func quoteShort(s string) string {
	if len(s) > 300 {
		return strconv.Quote(s[:300]) + "..."
	}
	return strconv.Quote(s)
}

func (c *checker) checkCache(a Assertion) error {
	if c.prev == nil {
		return fmt.Errorf("the previous phase built no image to compare with")
	}
	read := func(rootfs string) ([]byte, error) {
		host, fi, err := lstat(rootfs, a.Path)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is a %s, not a regular file", a.Path, kind(fi))
		}
		return os.ReadFile(host)
	}
	old, err := read(c.prev.rootfs)
	if err != nil {
		return fmt.Errorf("previous image: %w", err)
	}
	now, err := read(c.cur.rootfs)
	if err != nil {
		return err
	}
	if same := bytes.Equal(old, now); same != (a.Kind == "same") {
		return fmt.Errorf("content %s, previous phase %s (same=%v)", quoteShort(string(now)), quoteShort(string(old)), same)
	}
	return nil
}

func (c *checker) checkLayers(a Assertion) error {
	n := int64(len(c.cur.img.manifest.Layers))
	if a.Kind == "layers" {
		want := a.Num
		if a.Sub == "+" {
			want += int64(c.baseLayers)
		}
		if n != want {
			return fmt.Errorf("%d layers (base image: %d), want %d", n, c.baseLayers, want)
		}
		return nil
	}
	if n == 0 {
		return fmt.Errorf("the image has no layers")
	}
	entries, err := c.cur.img.entries(len(c.cur.img.manifest.Layers) - 1)
	if err != nil {
		return err
	}
	for _, e := range entries {
		m, _ := path.Match(a.Text, e)
		if a.Sub == "has" && e == a.Text {
			return nil
		}
		if a.Sub == "lacks" && m {
			return fmt.Errorf("top layer has %q", e)
		}
	}
	if a.Sub == "has" {
		return fmt.Errorf("top layer has no entry %q (entries: %q)", a.Text, entries)
	}
	return nil
}

func (c *checker) checkConfig(a Assertion) error {
	cfg := c.cur.img.config
	cc := cfg.Config
	switch a.Kind {
	case "env":
		for _, e := range cc.Env {
			if e == a.Text {
				return nil
			}
		}
		return fmt.Errorf("Env %q lacks %q", cc.Env, a.Text)
	case "no-env":
		if v, ok := envValue(cc.Env, a.Text); ok {
			return fmt.Errorf("Env has %s=%s", a.Text, v)
		}
	case "label", "no-label":
		k, v, _ := strings.Cut(a.Text, "=")
		got, ok := cc.Labels[k]
		if a.Kind == "no-label" && ok {
			return fmt.Errorf("label %s=%q present", a.Text, got)
		}
		if a.Kind == "label" && (!ok || got != v) {
			return fmt.Errorf("label %s = %q (present %v), want %q", k, got, ok, v)
		}
	case "workdir", "user", "stopsignal", "author":
		got := map[string]string{"workdir": cc.WorkingDir, "user": cc.User, "stopsignal": cc.StopSignal, "author": cfg.Author}[a.Kind]
		if got != a.Text {
			return fmt.Errorf("%s %q, want %q", a.Kind, got, a.Text)
		}
	case "entrypoint", "cmd", "shell", "onbuild":
		got := map[string][]string{"entrypoint": cc.Entrypoint, "cmd": cc.Cmd, "shell": cc.Shell, "onbuild": cc.OnBuild}[a.Kind]
		return compareList(a.Kind, got, a.JSON)
	case "expose", "volume":
		set := map[string]map[string]struct{}{"expose": cc.ExposedPorts, "volume": cc.Volumes}[a.Kind]
		key := a.Text
		if a.Kind == "volume" {
			key = a.Path
		}
		if _, ok := set[key]; !ok {
			return fmt.Errorf("%s %q not in %q", a.Kind, key, keys(set))
		}
	case "exposed-ports", "volumes":
		set := map[string]map[string]struct{}{"exposed-ports": cc.ExposedPorts, "volumes": cc.Volumes}[a.Kind]
		if got, want := keys(set), sortedCopy(a.Names); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("%s %q, want %q", a.Kind, got, want)
		}
	case "healthcheck":
		return checkHealthcheck(a, cfg)
	default:
		return fmt.Errorf("no check for keyword %q", a.Kind)
	}
	return nil
}

func checkHealthcheck(a Assertion, cfg imageConfig) error {
	h := cfg.Config.Healthcheck
	var test []string
	var interval, timeout, start time.Duration
	var retries int
	if h != nil {
		test, interval, timeout, start, retries = h.Test, h.Interval, h.Timeout, h.StartPeriod, h.Retries
	}
	switch a.Sub {
	case "test":
		return compareList("healthcheck test", test, a.JSON)
	case "retries":
		if int64(retries) != a.Num {
			return fmt.Errorf("healthcheck retries %d, want %d", retries, a.Num)
		}
	default:
		got := map[string]time.Duration{"interval": interval, "timeout": timeout, "start-period": start}[a.Sub]
		if got != a.Dur {
			return fmt.Errorf("healthcheck %s %s, want %s", a.Sub, got, a.Dur)
		}
	}
	return nil
}

// compareList compares string arrays; null, [] and missing are equal.
func compareList(what string, got, want []string) error {
	if len(got) == 0 && len(want) == 0 {
		return nil
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s %q, want %q", what, got, want)
	}
	return nil
}

func keys(m map[string]struct{}) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return sortedCopy(out)
}
