package netns

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHosts(t *testing.T) {
	extra := []HostEntry{{Name: "db", IP: netip.MustParseAddr("10.0.0.5")}, {Name: "v6", IP: netip.MustParseAddr("fd00::1")}}
	got := string(Hosts("web", netip.MustParseAddr("10.89.0.2"), extra))
	want := "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n" +
		"10.0.0.5\tdb\n" +
		"fd00::1\tv6\n" +
		"10.89.0.2\tweb\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	// --network none: localhost only, no line for the hostname.
	none := string(Hosts("web", netip.Addr{}, nil))
	if strings.Contains(none, "web") || !strings.HasPrefix(none, "127.0.0.1\tlocalhost\n") || strings.Count(none, "\n") != 6 {
		t.Errorf("none:\n%s", none)
	}
}

func TestResolvConf(t *testing.T) {
	tests := []struct{ name, host, want string }{
		{"kept",
			"# host\nsearch example.com\nnameserver 10.255.255.53\noptions ndots:2\n",
			"# host\nsearch example.com\nnameserver 10.255.255.53\noptions ndots:2\n"},
		{"systemd-resolved stub",
			"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
			"options edns0 trust-ad\nsearch lan\n# strata: the host's nameservers cannot be reached from containers\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"loopback among others",
			"nameserver 127.0.0.1\nnameserver 192.168.1.1\nnameserver ::1\n",
			"nameserver 192.168.1.1\n"},
		{"ipv6 only",
			"nameserver fe80::1%eth0\nnameserver 2001:db8::53\n",
			"# strata: the host's nameservers cannot be reached from containers\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"empty",
			"",
			"# strata: the host's nameservers cannot be reached from containers\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"no final newline",
			"nameserver 1.1.1.1",
			"nameserver 1.1.1.1\n"},
		{"garbage nameserver dropped",
			"nameserver bogus\nnameserver 9.9.9.9\n",
			"nameserver 9.9.9.9\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(ResolvConf([]byte(tc.host))); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestReadHostResolv(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "resolv.conf")
	upstream := filepath.Join(dir, "upstream.conf")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	write(main, "nameserver 127.0.0.53\n")
	if got := string(readHostResolv(main, upstream)); got != "nameserver 127.0.0.53\n" {
		t.Errorf("stub without upstream file: %q", got)
	}
	write(upstream, "nameserver 192.0.2.53\n")
	if got := string(readHostResolv(main, upstream)); got != "nameserver 192.0.2.53\n" {
		t.Errorf("stub with upstream file: %q", got)
	}
	write(main, "nameserver 127.0.0.53\nnameserver 192.0.2.1\n")
	if got := string(readHostResolv(main, upstream)); !strings.Contains(got, "192.0.2.1") {
		t.Errorf("a reachable server besides the stub: %q", got)
	}
	if got := readHostResolv(filepath.Join(dir, "missing"), upstream); len(got) != 0 {
		t.Errorf("missing host file: %q", got)
	}
	// End to end: what the container gets for a stub-only host file.
	write(main, "nameserver 127.0.0.53\n")
	os.Remove(upstream)
	if got := string(ResolvConf(readHostResolv(main, upstream))); !strings.Contains(got, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n") || strings.Contains(got, "127.0.0.53") {
		t.Errorf("container file: %q", got)
	}
}

func TestFiles(t *testing.T) {
	hosts, resolv := Files("box", netip.MustParseAddr("10.89.0.9"), nil)
	if !strings.HasSuffix(string(hosts), "10.89.0.9\tbox\n") {
		t.Errorf("hosts:\n%s", hosts)
	}
	if !strings.Contains(string(resolv), "nameserver ") || strings.Contains(string(resolv), "nameserver 127.") {
		t.Errorf("resolv.conf:\n%s", resolv)
	}
}

func TestParseHost(t *testing.T) {
	good := []struct {
		spec, name, ip string
	}{
		{"db:10.0.0.5", "db", "10.0.0.5"},
		{"db=10.0.0.5", "db", "10.0.0.5"},
		{"v6:fd00::1", "v6", "fd00::1"},
		{"v6=[fd00::1]", "v6", "fd00::1"},
		{"v6:[::1]", "v6", "::1"},
	}
	for _, tc := range good {
		e, err := ParseHost(tc.spec)
		if err != nil || e.Name != tc.name || e.IP.String() != tc.ip {
			t.Errorf("ParseHost(%q) = %+v, %v", tc.spec, e, err)
		}
	}
	for _, spec := range []string{"db", ":10.0.0.5", "db:", "db:nope", "a b:10.0.0.5", "db:10.0.0"} {
		if e, err := ParseHost(spec); err == nil {
			t.Errorf("ParseHost(%q) = %+v, want an error", spec, e)
		}
	}
}
