package dockerfile

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// parsePorts turns EXPOSE words ([ip:][hostport:]port[-end][/proto]) into
// "port/proto" keys, expanding ranges.
func parsePorts(words []string) ([]string, error) {
	var out []string
	for _, w := range words {
		ps, err := parsePort(w)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

func parsePort(raw string) ([]string, error) {
	parts := strings.Split(raw, ":")
	var ip, hostPort string
	container := parts[len(parts)-1]
	if len(parts) >= 2 {
		hostPort = parts[len(parts)-2]
	}
	if len(parts) >= 3 {
		ip = strings.Join(parts[:len(parts)-2], ":")
	}
	port, proto, _ := strings.Cut(container, "/")
	if port == "" {
		return nil, fmt.Errorf("invalid port: %q: no port specified", raw)
	}
	switch strings.ToLower(proto) {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("invalid port: %q: invalid proto: %s", raw, proto)
	}
	if ip != "" {
		host := strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
		if net.ParseIP(host) == nil {
			return nil, fmt.Errorf("invalid IP address: %s", ip)
		}
	}
	start, end, err := portRange(port)
	if err != nil {
		return nil, fmt.Errorf("invalid containerPort: %s", port)
	}
	if hostPort != "" {
		hs, he, err := portRange(hostPort)
		if err != nil {
			return nil, fmt.Errorf("invalid hostPort: %s", hostPort)
		}
		if end-start != he-hs && end != start {
			return nil, fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", port, hostPort)
		}
	}
	out := make([]string, 0, end-start+1)
	for i := start; i <= end; i++ {
		out = append(out, strconv.Itoa(i)+"/"+strings.ToLower(proto))
	}
	return out, nil
}

func portRange(s string) (int, int, error) {
	a, b, isRange := strings.Cut(s, "-")
	start, err := portNumber(a)
	if err != nil {
		return 0, 0, err
	}
	if !isRange || a == b {
		return start, start, nil
	}
	end, err := portNumber(b)
	if err != nil {
		return 0, 0, err
	}
	if end < start {
		return 0, 0, errors.New("invalid port range: " + s)
	}
	return start, end, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return n, nil
}

// linuxSignals are the signal names STOPSIGNAL accepts (without SIG).
var linuxSignals = map[string]bool{
	"ABRT": true, "ALRM": true, "BUS": true, "CHLD": true, "CLD": true, "CONT": true,
	"FPE": true, "HUP": true, "ILL": true, "INT": true, "IO": true, "IOT": true,
	"KILL": true, "PIPE": true, "POLL": true, "PROF": true, "PWR": true, "QUIT": true,
	"SEGV": true, "STKFLT": true, "STOP": true, "SYS": true, "TERM": true, "TRAP": true,
	"TSTP": true, "TTIN": true, "TTOU": true, "URG": true, "USR1": true, "USR2": true,
	"VTALRM": true, "WINCH": true, "XCPU": true, "XFSZ": true, "RTMIN": true, "RTMAX": true,
	"UNUSED": true,
}

// checkSignal validates a STOPSIGNAL value: a positive number, a name with
// or without SIG, or RTMIN+n / RTMAX-n.
func checkSignal(raw string) error {
	if n, err := strconv.Atoi(raw); err == nil {
		if n <= 0 || n > 64 {
			return fmt.Errorf("invalid signal: %s", raw)
		}
		return nil
	}
	s := strings.TrimPrefix(strings.ToUpper(raw), "SIG")
	if linuxSignals[s] {
		return nil
	}
	for _, base := range []string{"RTMIN+", "RTMAX-"} {
		if rest, ok := strings.CutPrefix(s, base); ok {
			if n, err := strconv.Atoi(rest); err == nil && n >= 1 && n <= 15 {
				return nil
			}
		}
	}
	return fmt.Errorf("invalid signal: %s", raw)
}
