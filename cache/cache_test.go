package cache

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKeyIsUnambiguous(t *testing.T) {
	tests := []struct{ a, b []string }{
		{[]string{"ab", "c"}, []string{"a", "bc"}},
		{[]string{"a"}, []string{"a", ""}},
		{[]string{}, []string{""}},
		{[]string{"RUN x"}, []string{"RUN y"}},
	}
	for _, tt := range tests {
		if Key(tt.a...) == Key(tt.b...) {
			t.Errorf("Key(%q) == Key(%q)", tt.a, tt.b)
		}
	}
	if Key("a", "b") != Key("a", "b") {
		t.Error("Key is not deterministic")
	}
}

func TestLocalPutGet(t *testing.T) {
	s, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k := Key("step")
	if _, ok, err := s.Get(k); ok || err != nil {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	e := Entry{Key: k, Layer: &Layer{Digest: "sha256:aa", Size: 3}}
	e.History.CreatedBy = "RUN x"
	if err := s.Put(e); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(k)
	if err != nil || !ok {
		t.Fatalf("Get: ok=%v err=%v", ok, err)
	}
	if got.Layer == nil || got.Layer.Digest != "sha256:aa" || got.History.CreatedBy != "RUN x" {
		t.Errorf("got %+v", got)
	}
}

func TestLocalRejectsBadKeysAndTornEntries(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"../../etc/passwd", "", "zz", Key("x")[:63] + "/"} {
		if _, _, err := s.Get(k); err == nil {
			t.Errorf("Get(%q) accepted", k)
		}
		if err := s.Put(Entry{Key: k}); err == nil {
			t.Errorf("Put(%q) accepted", k)
		}
	}
	k := Key("torn")
	if err := os.WriteFile(filepath.Join(dir, "entries", k+".json"), []byte(`{"key":"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(k); ok || err != nil {
		t.Errorf("torn entry: ok=%v err=%v, want a miss", ok, err)
	}
	other := Key("other")
	if err := os.WriteFile(filepath.Join(dir, "entries", k+".json"), []byte(`{"key":"`+other+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(k); ok {
		t.Error("entry filed under the wrong key was trusted")
	}
}

func TestEntryLayerPerEpoch(t *testing.T) {
	l, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := Key("step")
	plain := Layer{Digest: "sha256:" + Key("plain"), DiffID: "sha256:" + Key("plain"), Size: 10}
	clamped := Layer{Digest: "sha256:" + Key("clamped"), DiffID: "sha256:" + Key("clamped"), Size: 10}
	e := Entry{Key: key, Snapshot: key}
	one, other := int64(1_700_000_000), int64(1_600_000_000)
	if e.LayerFor(nil) != nil || e.LayerFor(&one) != nil {
		t.Fatal("a new entry has layers")
	}
	e.SetLayerFor(nil, plain)
	e.SetLayerFor(&one, clamped)
	if err := l.Put(e); err != nil {
		t.Fatal(err)
	}
	got, ok, err := l.Get(key)
	if err != nil || !ok {
		t.Fatalf("Get: %v %v", ok, err)
	}
	for _, tc := range []struct {
		name  string
		epoch *int64
		want  *Layer
	}{
		{"no epoch", nil, &plain},
		{"recorded epoch", &one, &clamped},
		{"other epoch", &other, nil},
	} {
		l := got.LayerFor(tc.epoch)
		if (l == nil) != (tc.want == nil) || (l != nil && *l != *tc.want) {
			t.Errorf("%s: LayerFor = %+v, want %+v", tc.name, l, tc.want)
		}
	}
}
