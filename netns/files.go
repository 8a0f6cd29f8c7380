package netns

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// HostEntry is one extra /etc/hosts line (docker run --add-host).
type HostEntry struct {
	Name string
	IP   netip.Addr
}

// ParseHost parses an --add-host value, "NAME:IP" or "NAME=IP"; IP may be
// IPv6, bare or in brackets.
func ParseHost(spec string) (HostEntry, error) {
	name, addr, ok := strings.Cut(spec, "=")
	if !ok {
		name, addr, ok = strings.Cut(spec, ":")
	}
	if !ok {
		return HostEntry{}, fmt.Errorf("bad format for add-host: %q", spec)
	}
	if name == "" || strings.ContainsAny(name, " \t\n#") {
		return HostEntry{}, fmt.Errorf("invalid hostname in add-host: %q", spec)
	}
	raw := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	a, err := netip.ParseAddr(raw)
	if err != nil {
		return HostEntry{}, fmt.Errorf("invalid IP address in add-host: %q", addr)
	}
	return HostEntry{Name: name, IP: a}, nil
}

// fallbackNameservers are the public resolvers used when none of the
// host's nameservers can be reached from a container, as Docker does.
const fallbackNameservers = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"

// Hosts returns /etc/hosts for a container: the localhost entries, the
// extra entries, and hostname mapped to ip. A zero ip (--network none)
// gives the localhost entries and extras only.
func Hosts(hostname string, ip netip.Addr, extra []HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	for _, e := range extra {
		fmt.Fprintf(&b, "%s\t%s\n", e.IP, e.Name)
	}
	if ip.IsValid() && hostname != "" {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	return b.Bytes()
}

// ResolvConf turns the host's resolv.conf into a container's: nameservers
// a container cannot reach are dropped (loopback ones, such as
// systemd-resolved's 127.0.0.53, and IPv6 ones, the bridge being
// IPv4-only); when none is left, Docker's fallback 8.8.8.8 and 8.8.4.4 is
// used. Every other line (search, options, comments) is kept.
func ResolvConf(host []byte) []byte {
	var b bytes.Buffer
	kept := 0
	for _, line := range strings.SplitAfter(string(host), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			a, err := netip.ParseAddr(f[1])
			if err != nil || a.IsLoopback() || !a.Unmap().Is4() {
				continue
			}
			kept++
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteByte('\n')
		}
	}
	if kept == 0 {
		b.WriteString("# strata: the host's nameservers cannot be reached from containers\n")
		b.WriteString(fallbackNameservers)
	}
	return b.Bytes()
}

// The host files Files reads; systemd-resolved keeps the real upstream
// servers in the second one while /etc/resolv.conf points at its stub.
const (
	hostResolvConf     = "/etc/resolv.conf"
	resolvedResolvConf = "/run/systemd/resolve/resolv.conf"
)

// Files returns /etc/hosts and /etc/resolv.conf for a container named
// hostname with address ip (zero for --network none). resolv.conf comes
// from the host's (see [ResolvConf]); when the host's only points at a
// loopback stub and systemd-resolved's upstream list exists, that list is
// used instead, as Docker does.
func Files(hostname string, ip netip.Addr, extraHosts []HostEntry) (hosts, resolv []byte) {
	return Hosts(hostname, ip, extraHosts), ResolvConf(readHostResolv(hostResolvConf, resolvedResolvConf))
}

// readHostResolv reads main, or upstream when main names only loopback
// nameservers; a missing file reads as empty.
func readHostResolv(main, upstream string) []byte {
	b, _ := os.ReadFile(main)
	if !onlyLoopback(b) {
		return b
	}
	if u, err := os.ReadFile(upstream); err == nil {
		return u
	}
	return b
}

// onlyLoopback reports whether conf has nameservers and all are loopback.
func onlyLoopback(conf []byte) bool {
	n := 0
	for _, line := range strings.Split(string(conf), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || !a.IsLoopback() {
			return false
		}
		n++
	}
	return n > 0
}
