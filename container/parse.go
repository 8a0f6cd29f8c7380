package container

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ParseSignal parses a signal as Docker takes it: a name with or without
// SIG ("TERM", "SIGTERM", "sigterm") or a number.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal: %s", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("invalid signal: %s", s)
	}
	return sig, nil
}

// ParseSize parses a memory size as Docker does: a number with an optional
// unit b, k, m, g, t (powers of 1024, case-insensitive, an optional
// trailing "b" as in "32mb"); "32m" is 32 MiB.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("invalid size: %q", s)
	}
	t = strings.TrimSuffix(t, "ib")
	if len(t) > 1 && strings.HasSuffix(t, "b") && strings.ContainsAny(t[len(t)-2:len(t)-1], "kmgt") {
		t = t[:len(t)-1]
	}
	mult := int64(1)
	switch t[len(t)-1] {
	case 'b':
		t = t[:len(t)-1]
	case 'k':
		mult, t = 1<<10, t[:len(t)-1]
	case 'm':
		mult, t = 1<<20, t[:len(t)-1]
	case 'g':
		mult, t = 1<<30, t[:len(t)-1]
	case 't':
		mult, t = 1<<40, t[:len(t)-1]
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size: %q", s)
	}
	v := f * float64(mult)
	if v > float64(1<<62) {
		return 0, fmt.Errorf("invalid size: %q: too large", s)
	}
	return int64(v), nil
}

// ParseVolume parses -v SRC:DST[:OPTS]: SRC is an absolute host path (a
// bind mount) or a volume name; a lone DST is an anonymous volume. OPTS
// are comma-separated: ro, rw (others, such as z or nocopy, are
// rejected rather than silently ignored).
func ParseVolume(spec string) (MountSpec, error) {
	parts := strings.Split(spec, ":")
	var m MountSpec
	switch len(parts) {
	case 1:
		m = MountSpec{Type: MountVolume, Destination: parts[0]}
	case 2, 3:
		m = MountSpec{Source: parts[0], Destination: parts[1]}
		if len(parts) == 3 {
			for _, o := range strings.Split(parts[2], ",") {
				switch o {
				case "ro":
					m.ReadOnly = true
				case "rw", "":
				default:
					return m, fmt.Errorf("invalid volume option %q in %q: only ro and rw are supported", o, spec)
				}
			}
		}
		switch {
		case m.Source == "":
			return m, fmt.Errorf("invalid volume specification %q: empty source", spec)
		case filepath.IsAbs(m.Source):
			m.Type, m.Source = MountBind, filepath.Clean(m.Source)
		case strings.HasPrefix(m.Source, ".") || strings.Contains(m.Source, "/"):
			return m, fmt.Errorf("invalid volume specification %q: a host path must be absolute", spec)
		case !isName(m.Source) || len(m.Source) < 2:
			return m, fmt.Errorf("invalid volume name %q", m.Source)
		default:
			m.Type = MountVolume
		}
	default:
		return m, fmt.Errorf("invalid volume specification %q", spec)
	}
	if !path.IsAbs(m.Destination) {
		return m, fmt.Errorf("invalid volume specification %q: the destination must be an absolute path", spec)
	}
	return m, nil
}

// ParseTmpfs parses --tmpfs DST[:OPTS] (OPTS as for mount -t tmpfs, e.g.
// size=64m,mode=1777; ro, noexec and such included).
func ParseTmpfs(spec string) (MountSpec, error) {
	dst, opts, _ := strings.Cut(spec, ":")
	if !path.IsAbs(dst) {
		return MountSpec{}, fmt.Errorf("invalid tmpfs %q: the destination must be an absolute path", spec)
	}
	m := MountSpec{Type: MountTmpfs, Destination: dst}
	if opts != "" {
		for _, o := range strings.Split(opts, ",") {
			if o == "ro" {
				m.ReadOnly = true
				continue
			}
			m.Options = append(m.Options, o)
		}
	}
	return m, nil
}

// ParseMount parses --mount type=bind|volume|tmpfs,source=…,target=…
// [,readonly][,tmpfs-size=…][,tmpfs-mode=…] (src, dst, destination and
// ro are accepted too).
func ParseMount(spec string) (MountSpec, error) {
	m := MountSpec{Type: MountVolume}
	for _, field := range strings.Split(spec, ",") {
		k, v, hasValue := strings.Cut(field, "=")
		switch strings.ToLower(k) {
		case "type":
			switch v {
			case MountBind, MountVolume, MountTmpfs:
				m.Type = v
			default:
				return m, fmt.Errorf("invalid mount type %q in %q", v, spec)
			}
		case "source", "src":
			m.Source = v
		case "target", "dst", "destination":
			m.Destination = v
		case "readonly", "ro":
			if !hasValue {
				m.ReadOnly = true
				break
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return m, fmt.Errorf("invalid readonly value %q in %q", v, spec)
			}
			m.ReadOnly = b
		case "tmpfs-size":
			n, err := ParseSize(v)
			if err != nil {
				return m, err
			}
			m.Options = append(m.Options, fmt.Sprintf("size=%d", n))
		case "tmpfs-mode":
			if _, err := strconv.ParseUint(v, 8, 32); err != nil {
				return m, fmt.Errorf("invalid tmpfs-mode %q", v)
			}
			m.Options = append(m.Options, "mode="+v)
		default:
			return m, fmt.Errorf("unsupported mount option %q in %q", k, spec)
		}
	}
	if !path.IsAbs(m.Destination) {
		return m, fmt.Errorf("invalid mount %q: target must be an absolute path", spec)
	}
	switch m.Type {
	case MountBind:
		if !filepath.IsAbs(m.Source) {
			return m, fmt.Errorf("invalid mount %q: a bind source must be an absolute host path", spec)
		}
		m.Source = filepath.Clean(m.Source)
	case MountVolume:
		if m.Source != "" && (!isName(m.Source) || len(m.Source) < 2) {
			return m, fmt.Errorf("invalid volume name %q", m.Source)
		}
	case MountTmpfs:
		if m.Source != "" {
			return m, fmt.Errorf("invalid mount %q: a tmpfs has no source", spec)
		}
	}
	return m, nil
}

// ParseEnvFile reads a Docker env file: one K=V per line, # comments and
// blank lines skipped, a lone K taking the value from our environment
// (and skipped when unset there).
func ParseEnvFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, hasValue := strings.Cut(line, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: invalid variable name %q", name, n, k)
		}
		if !hasValue {
			if v, ok := os.LookupEnv(k); ok {
				out = append(out, k+"="+v)
			}
			continue
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// ParseEnv expands -e values: K=V as it is, a lone K from our environment
// (skipped when unset there), as Docker does.
func ParseEnv(in []string) []string {
	var out []string
	for _, e := range in {
		if strings.Contains(e, "=") {
			out = append(out, e)
			continue
		}
		if v, ok := os.LookupEnv(e); ok {
			out = append(out, e+"="+v)
		}
	}
	return out
}
