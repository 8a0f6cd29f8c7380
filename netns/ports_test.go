package netns

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		spec string
		want []PortMapping
	}{
		{"80", []PortMapping{{ContainerPort: 80, Proto: "tcp"}}},
		{"8080:80", []PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}},
		{"8080:80/udp", []PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "udp"}}},
		{"53/UDP", []PortMapping{{ContainerPort: 53, Proto: "udp"}}},
		{"80/", []PortMapping{{ContainerPort: 80, Proto: "tcp"}}},
		{"0:80", []PortMapping{{ContainerPort: 80, Proto: "tcp"}}},
		{"127.0.0.1:8080:80", []PortMapping{{HostIP: a("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}},
		{"127.0.0.1::80", []PortMapping{{HostIP: a("127.0.0.1"), ContainerPort: 80, Proto: "tcp"}}},
		{"0.0.0.0:8080:80", []PortMapping{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}},
		{"[::1]:8080:80", []PortMapping{{HostIP: a("::1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}},
		{"::1:8080:80", []PortMapping{{HostIP: a("::1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}},
		{"[::]::80/udp", []PortMapping{{ContainerPort: 80, Proto: "udp"}}},
		{"8000-8001:80-81", []PortMapping{
			{HostPort: 8000, ContainerPort: 80, Proto: "tcp"},
			{HostPort: 8001, ContainerPort: 81, Proto: "tcp"},
		}},
		{"80-82", []PortMapping{
			{ContainerPort: 80, Proto: "tcp"},
			{ContainerPort: 81, Proto: "tcp"},
			{ContainerPort: 82, Proto: "tcp"},
		}},
		{"8000-8010:80", []PortMapping{{HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80, Proto: "tcp"}}},
		{"65535:65535", []PortMapping{{HostPort: 65535, ContainerPort: 65535, Proto: "tcp"}}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParsePort(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("mapping %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParsePortErrors(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"", "no port specified: <empty>"},
		{"8080:", "no port specified: 8080:<empty>"},
		{"abc", "invalid containerPort: abc"},
		{"0", "invalid containerPort: 0"},
		{"65536", "invalid containerPort: 65536"},
		{"-1", "invalid containerPort: -1"},
		{"+80", "invalid containerPort: +80"},
		{"x:80", "invalid hostPort: x"},
		{"90-80:80", "invalid hostPort: 90-80"},
		{"80/sctp", "invalid proto: sctp"},
		{"80/icmp", "invalid proto: icmp"},
		{"1.2.3:8080:80", "invalid IP address: 1.2.3"},
		{"[::1:8080:80", "invalid IP address: [::1"},
		{"[fe80::1%eth0]:8080:80", "invalid IP address: [fe80::1%eth0]"},
		{"8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"},
		{"8000:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParsePort(tc.spec)
			if err == nil {
				t.Fatalf("got %v, want error %q", got, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want %q", err, tc.want)
			}
		})
	}
}

func TestPortMappingString(t *testing.T) {
	tests := []struct {
		m    PortMapping
		want string
	}{
		{PortMapping{HostPort: 8080, ContainerPort: 80}, "0.0.0.0:8080->80/tcp"},
		{PortMapping{HostIP: netip.MustParseAddr("::1"), HostPort: 53, ContainerPort: 53, Proto: "udp"}, "[::1]:53->53/udp"},
		{PortMapping{HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80}, "0.0.0.0:8000-8010->80/tcp"},
	}
	for _, tc := range tests {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	other := netip.MustParseAddr("127.0.0.2")
	tests := []struct {
		a, b PortMapping
		want bool
	}{
		{PortMapping{HostPort: 1}, PortMapping{HostPort: 1, Proto: "tcp"}, true},
		{PortMapping{HostPort: 1}, PortMapping{HostPort: 1, Proto: "udp"}, false},
		{PortMapping{HostPort: 1}, PortMapping{HostPort: 2}, false},
		{PortMapping{HostPort: 1}, PortMapping{HostIP: lo, HostPort: 1}, true},
		{PortMapping{HostIP: lo, HostPort: 1}, PortMapping{HostIP: lo, HostPort: 1}, true},
		{PortMapping{HostIP: lo, HostPort: 1}, PortMapping{HostIP: other, HostPort: 1}, false},
	}
	for _, tc := range tests {
		if got := overlaps(tc.a, tc.b); got != tc.want {
			t.Errorf("overlaps(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// listenLocal holds a TCP port on 127.0.0.1 for the test's duration.
func listenLocal(t *testing.T) (net.Listener, uint16) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, uint16(l.Addr().(*net.TCPAddr).Port)
}

func TestResolvePorts(t *testing.T) {
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")

	// A port a container of the bridge holds is refused like Docker does.
	_, err := resolvePorts(ctx, []PortMapping{{HostPort: 18080, ContainerPort: 80}},
		[]PortMapping{{HostPort: 18080, ContainerPort: 81, Proto: "tcp"}})
	if err == nil || err.Error() != "Bind for 0.0.0.0:18080 failed: port is already allocated" {
		t.Errorf("taken port: got %v", err)
	}
	// The same port twice in one request is refused too.
	_, err = resolvePorts(ctx, []PortMapping{
		{HostIP: lo, HostPort: 18080, ContainerPort: 80},
		{HostPort: 18080, ContainerPort: 81},
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "port is already allocated") {
		t.Errorf("duplicate port: got %v", err)
	}

	// A port bound on the host by someone else is refused.
	_, busy := listenLocal(t)
	_, err = resolvePorts(ctx, []PortMapping{{HostIP: lo, HostPort: busy, ContainerPort: 80}}, nil)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("busy port: got %v", err)
	}

	// Free ports are chosen for 0, different per mapping, none the taken one.
	got, err := resolvePorts(ctx, []PortMapping{
		{HostIP: lo, ContainerPort: 80},
		{HostIP: lo, ContainerPort: 80, Proto: "udp"},
		{HostIP: lo, ContainerPort: 81},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].HostPort == 0 || got[1].HostPort == 0 || got[2].HostPort == 0 || got[0].HostPort == got[2].HostPort {
		t.Errorf("free ports: got %v", got)
	}
	if got[0].Proto != "tcp" || got[1].Proto != "udp" {
		t.Errorf("protocols not normalised: %v", got)
	}

	// A range skips a port busy on the host and one another container
	// holds; the third port of the range is free unless some other
	// program happens to hold it.
	_, first := listenLocal(t)
	got, err = resolvePorts(ctx, []PortMapping{{HostIP: lo, HostPort: first, HostPortEnd: first + 2, ContainerPort: 80}},
		[]PortMapping{{HostIP: lo, HostPort: first + 1, Proto: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].HostPort != first+2 || got[0].HostPortEnd != 0 {
		t.Errorf("range: got %v, want port %d", got[0], first+2)
	}
	// A range with nothing free.
	_, err = resolvePorts(ctx, []PortMapping{{HostIP: lo, HostPort: first, HostPortEnd: first + 1, ContainerPort: 80}},
		[]PortMapping{{HostIP: lo, HostPort: first + 1, Proto: "tcp"}})
	if err == nil || !strings.Contains(err.Error(), "all ports are allocated") {
		t.Errorf("full range: got %v", err)
	}
	// A mapping without container port is a caller bug.
	if _, err := resolvePorts(ctx, []PortMapping{{HostPort: 1}}, nil); err == nil {
		t.Error("no container port: no error")
	}
}
