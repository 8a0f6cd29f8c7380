package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// PortMapping publishes a container port on the host.
type PortMapping struct {
	// HostIP is the host address to listen on; the zero value means all
	// (IPv4 and IPv6).
	HostIP netip.Addr `json:"host_ip,omitzero"`
	// HostPort 0 asks Setup for a free port. HostPortEnd > HostPort asks
	// for a free port in HostPort..HostPortEnd (Docker's "8000-8010:80").
	// Setup's Attachment always has the port chosen, HostPortEnd 0.
	HostPort      uint16 `json:"host_port"`
	HostPortEnd   uint16 `json:"host_port_end,omitempty"`
	ContainerPort uint16 `json:"container_port"`
	Proto         string `json:"proto"` // "tcp" or "udp"; "" is tcp
}

// String formats m as Docker's `docker port` does: 0.0.0.0:8080->80/tcp.
func (m PortMapping) String() string {
	host := m.hostIPString()
	port := strconv.Itoa(int(m.HostPort))
	if m.HostPortEnd > m.HostPort {
		port += "-" + strconv.Itoa(int(m.HostPortEnd))
	}
	return net.JoinHostPort(host, port) + "->" + strconv.Itoa(int(m.ContainerPort)) + "/" + m.proto()
}

func (m PortMapping) proto() string {
	if m.Proto == "" {
		return "tcp"
	}
	return m.Proto
}

func (m PortMapping) hostIPString() string {
	if !m.HostIP.IsValid() {
		return "0.0.0.0"
	}
	return m.HostIP.String()
}

// listenAddr is where the proxy (and the free-port probe) binds.
func (m PortMapping) listenAddr(port uint16) string {
	if !m.HostIP.IsValid() {
		return ":" + strconv.Itoa(int(port)) // every address, v4 and v6
	}
	return netip.AddrPortFrom(m.HostIP, port).String()
}

// ParsePort parses one -p value, Docker's
// [IP:][HOSTPORT:]CONTAINERPORT[/PROTO], where IP may be an IPv6 address
// in brackets, HOSTPORT may be empty (IP::80) or 0 for a free port, both
// ports may be ranges of the same length (one mapping per port) and a host
// range with a single container port picks a free port from the range.
// PROTO is tcp (default) or udp.
func ParsePort(spec string) ([]PortMapping, error) {
	rest, proto, _ := strings.Cut(spec, "/")
	proto = strings.ToLower(proto)
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp":
	default:
		if proto == "sctp" {
			return nil, fmt.Errorf("invalid proto: %s (only tcp and udp can be published)", proto)
		}
		return nil, fmt.Errorf("invalid proto: %s", proto)
	}

	var ipStr, hostStr, ctrStr string
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		ctrStr = rest
	} else {
		ctrStr = rest[i+1:]
		head := rest[:i]
		if j := strings.LastIndexByte(head, ':'); j < 0 {
			hostStr = head
		} else {
			ipStr, hostStr = head[:j], head[j+1:]
		}
	}

	var hostIP netip.Addr
	if ipStr != "" {
		raw := ipStr
		if strings.HasPrefix(raw, "[") {
			if !strings.HasSuffix(raw, "]") {
				return nil, fmt.Errorf("invalid IP address: %s", ipStr)
			}
			raw = raw[1 : len(raw)-1]
		}
		a, err := netip.ParseAddr(raw)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("invalid IP address: %s", ipStr)
		}
		// 0.0.0.0 and :: are spelled-out "all addresses".
		if !a.IsUnspecified() {
			hostIP = a.Unmap()
		}
	}
	if ctrStr == "" {
		return nil, fmt.Errorf("no port specified: %s<empty>", spec)
	}
	cStart, cEnd, err := parseRange(ctrStr, false)
	if err != nil {
		return nil, fmt.Errorf("invalid containerPort: %s", ctrStr)
	}
	var hStart, hEnd uint16
	if hostStr != "" {
		hStart, hEnd, err = parseRange(hostStr, true)
		if err != nil {
			return nil, fmt.Errorf("invalid hostPort: %s", hostStr)
		}
	}

	n := int(cEnd) - int(cStart) + 1
	var out []PortMapping
	switch {
	case hostStr == "" || hStart == 0:
		// A free host port for each container port.
		for p := int(cStart); p <= int(cEnd); p++ {
			out = append(out, PortMapping{HostIP: hostIP, ContainerPort: uint16(p), Proto: proto})
		}
	case int(hEnd)-int(hStart)+1 == n:
		for k := 0; k < n; k++ {
			out = append(out, PortMapping{HostIP: hostIP, HostPort: hStart + uint16(k), ContainerPort: cStart + uint16(k), Proto: proto})
		}
	case n == 1:
		out = append(out, PortMapping{HostIP: hostIP, HostPort: hStart, HostPortEnd: hEnd, ContainerPort: cStart, Proto: proto})
	default:
		return nil, fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", ctrStr, hostStr)
	}
	return out, nil
}

// parseRange parses "N" or "N-M" (N <= M). Port 0 is only accepted where
// it means "any" (a host port, alone).
func parseRange(s string, zeroOK bool) (start, end uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	start, err = parsePortNumber(a)
	if err != nil {
		return 0, 0, err
	}
	end = start
	if isRange {
		if end, err = parsePortNumber(b); err != nil {
			return 0, 0, err
		}
		if end < start || start == 0 {
			return 0, 0, errors.New("bad range")
		}
	}
	if start == 0 && !zeroOK {
		return 0, 0, errors.New("port 0")
	}
	return start, end, nil
}

func parsePortNumber(s string) (uint16, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

// overlaps reports whether two mappings would need the same host socket.
func overlaps(a, b PortMapping) bool {
	if a.proto() != b.proto() || a.HostPort != b.HostPort {
		return false
	}
	return !a.HostIP.IsValid() || !b.HostIP.IsValid() || a.HostIP == b.HostIP
}

// resolvePorts picks the host port of every mapping that asks for a free
// one and checks all of them against the ports other containers of the
// bridge hold and against what is bound on the host now. taken holds the
// other containers' mappings.
func resolvePorts(ctx context.Context, ports []PortMapping, taken []PortMapping) ([]PortMapping, error) {
	out := make([]PortMapping, 0, len(ports))
	held := append([]PortMapping(nil), taken...)
	free := func(m PortMapping) error {
		for _, t := range held {
			if overlaps(m, t) {
				return fmt.Errorf("Bind for %s failed: port is already allocated", net.JoinHostPort(m.hostIPString(), strconv.Itoa(int(m.HostPort))))
			}
		}
		if err := probe(ctx, m, m.HostPort); err != nil {
			return fmt.Errorf("netns: publishing %s: %w", m, err)
		}
		return nil
	}
	for _, m := range ports {
		if m.ContainerPort == 0 {
			return nil, errors.New("netns: port mapping without a container port")
		}
		if m.HostIP.IsValid() {
			m.HostIP = m.HostIP.Unmap()
		}
		m.Proto = m.proto()
		if m.Proto != "tcp" && m.Proto != "udp" {
			return nil, fmt.Errorf("invalid proto: %s", m.Proto)
		}
		var err error
		switch {
		case m.HostPort != 0 && m.HostPortEnd <= m.HostPort:
			m.HostPortEnd = 0
			err = free(m)
		case m.HostPort != 0:
			err = fmt.Errorf("Bind for %s failed: all ports are allocated", net.JoinHostPort(m.hostIPString(), fmt.Sprintf("%d-%d", m.HostPort, m.HostPortEnd)))
			lo, hi := int(m.HostPort), int(m.HostPortEnd)
			m.HostPortEnd = 0
			for p := lo; p <= hi; p++ {
				m.HostPort = uint16(p)
				if free(m) == nil {
					err = nil
					break
				}
			}
		default:
			// The kernel's ephemeral range, as Docker's allocator uses;
			// retried when it hands out a port a container holds.
			err = errors.New("netns: found no free host port")
			for try := 0; try < 32 && err != nil; try++ {
				var p uint16
				if p, err = ephemeralPort(ctx, m); err == nil {
					m.HostPort = p
					err = free(m)
				}
			}
		}
		if err != nil {
			return nil, err
		}
		held = append(held, m)
		out = append(out, m)
	}
	return out, nil
}

// probe checks that the mapping's host socket can be bound now.
func probe(ctx context.Context, m PortMapping, port uint16) error {
	var lc net.ListenConfig
	addr := m.listenAddr(port)
	if m.proto() == "udp" {
		c, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// ephemeralPort lets the kernel choose a free port for the mapping.
func ephemeralPort(ctx context.Context, m PortMapping) (uint16, error) {
	var lc net.ListenConfig
	addr := m.listenAddr(0)
	var a net.Addr
	if m.proto() == "udp" {
		c, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return 0, err
		}
		a = c.LocalAddr()
		c.Close()
	} else {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return 0, err
		}
		a = l.Addr()
		l.Close()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return 0, err
	}
	return ap.Port(), nil
}
