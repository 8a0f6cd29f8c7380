package netns

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// iptables runs iptables in table; -w waits for the xtables lock that
// other tools (Docker, firewalld) take with the legacy backend.
func iptables(ctx context.Context, table string, args ...string) (string, error) {
	return run(ctx, nil, "iptables", append([]string{"-w", "-t", table}, args...)...)
}

// rule is one iptables rule: its table, chain and match/target arguments.
type rule struct {
	table, chain string
	args         []string
}

// baseRules are the bridge's shared rules, in the order they go into their
// chains, and the jumps into those chains from the built-in ones.
func baseRules(cfg Config) (own, jumps []rule) {
	br, subnet := cfg.Bridge, cfg.Subnet.String()
	own = []rule{
		{"nat", cfg.postChain(), []string{"-s", subnet, "!", "-o", br, "-j", "MASQUERADE"}},
		{"filter", cfg.fwdChain(), []string{"-i", br, "-j", "ACCEPT"}},
		{"filter", cfg.fwdChain(), []string{"-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}},
		// Published ports: connections DNAT'd to a container.
		{"filter", cfg.fwdChain(), []string{"-o", br, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"}},
		// Nothing else is routed into the containers (their unpublished
		// ports are not reachable from other machines or other bridges).
		{"filter", cfg.fwdChain(), []string{"-o", br, "-j", "DROP"}},
	}
	jumps = []rule{
		// Loopback destinations are left to the userspace proxy, also in
		// PREROUTING: a packet from the network addressed to 127.0.0.1
		// must not be turned into one for a container.
		{"nat", "PREROUTING", []string{"!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", cfg.dnatChain()}},
		{"nat", "OUTPUT", []string{"!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", cfg.dnatChain()}},
		{"nat", "POSTROUTING", []string{"-j", cfg.postChain()}},
		{"filter", "FORWARD", []string{"-j", cfg.fwdChain()}},
	}
	return own, jumps
}

// baseChains lists the bridge's own chains with their tables.
func baseChains(cfg Config) [][2]string {
	return [][2]string{
		{"nat", cfg.dnatChain()},
		{"nat", cfg.postChain()},
		{"filter", cfg.fwdChain()},
	}
}

// ensureChain creates a chain unless it exists.
func ensureChain(ctx context.Context, table, chain string) error {
	if _, err := iptables(ctx, table, "-S", chain); err == nil {
		return nil
	}
	if _, err := iptables(ctx, table, "-N", chain); err != nil && !hasMsg(err, "already exists") {
		return fmt.Errorf("netns: making chain %s: %w", chain, err)
	}
	return nil
}

// ensureRule appends r (or inserts it first) unless it is there.
func ensureRule(ctx context.Context, r rule, first bool) error {
	check := append([]string{"-C", r.chain}, r.args...)
	if _, err := iptables(ctx, r.table, check...); err == nil {
		return nil
	}
	op := []string{"-A", r.chain}
	if first {
		// Before any DROP another tool put in FORWARD.
		op = []string{"-I", r.chain, "1"}
	}
	if _, err := iptables(ctx, r.table, append(op, r.args...)...); err != nil {
		return fmt.Errorf("netns: adding iptables rule to %s: %w", r.chain, err)
	}
	return nil
}

// ensureRules installs the chains, their shared rules and the jumps into
// them. Under the bridge's lock, so checking then adding does not race
// with other strata processes.
func ensureRules(ctx context.Context, cfg Config) error {
	for _, c := range baseChains(cfg) {
		if err := ensureChain(ctx, c[0], c[1]); err != nil {
			return err
		}
	}
	own, jumps := baseRules(cfg)
	for _, r := range own {
		if err := ensureRule(ctx, r, false); err != nil {
			return err
		}
	}
	for _, r := range jumps {
		if err := ensureRule(ctx, r, r.chain == "FORWARD"); err != nil {
			return err
		}
	}
	return nil
}

// removeRules deletes the jumps and the bridge's chains; missing ones are
// fine.
func removeRules(ctx context.Context, cfg Config) error {
	_, jumps := baseRules(cfg)
	for _, r := range jumps {
		// A rule may have been added twice by hand; delete every copy.
		for i := 0; i < 16; i++ {
			if _, err := iptables(ctx, r.table, append([]string{"-D", r.chain}, r.args...)...); err != nil {
				break
			}
		}
	}
	for _, c := range baseChains(cfg) {
		if _, err := iptables(ctx, c[0], "-S", c[1]); err != nil {
			continue // no such chain
		}
		if _, err := iptables(ctx, c[0], "-F", c[1]); err != nil {
			return fmt.Errorf("netns: flushing %s: %w", c[1], err)
		}
		if _, err := iptables(ctx, c[0], "-X", c[1]); err != nil {
			return fmt.Errorf("netns: removing %s: %w", c[1], err)
		}
	}
	return nil
}

// comment tags a container's rules so they can be found without state.
func comment(id string) string { return "strata:" + id }

// dnatRule is the rule publishing m of a container at ip; nil for
// mappings the proxy alone serves (loopback and IPv6 host addresses).
func dnatRule(cfg Config, id string, m PortMapping, ip netip.Addr) *rule {
	if m.HostIP.IsValid() && (!m.HostIP.Is4() || m.HostIP.IsLoopback()) {
		return nil
	}
	// Traffic from the bridge (containers to a published port) is left to
	// the proxy, which avoids hairpinning a container to itself.
	args := []string{"!", "-i", cfg.Bridge}
	if m.HostIP.IsValid() {
		args = append(args, "-d", m.HostIP.String()+"/32")
	}
	args = append(args,
		"-p", m.proto(), "-m", m.proto(), "--dport", strconv.Itoa(int(m.HostPort)),
		"-m", "comment", "--comment", comment(id),
		"-j", "DNAT", "--to-destination", netip.AddrPortFrom(ip, m.ContainerPort).String())
	return &rule{"nat", cfg.dnatChain(), args}
}

// addPortRules installs the DNAT rules of a container.
func addPortRules(ctx context.Context, cfg Config, id string, ports []PortMapping, ip netip.Addr) error {
	for _, m := range ports {
		r := dnatRule(cfg, id, m, ip)
		if r == nil {
			continue
		}
		if _, err := iptables(ctx, r.table, append([]string{"-A", r.chain}, r.args...)...); err != nil {
			return fmt.Errorf("netns: publishing %s: %w", m, err)
		}
	}
	return nil
}

// removePortRules deletes every rule of the bridge's DNAT chain tagged
// with the container's comment. Finding them by listing, rather than
// rebuilding them from the state, also catches rules of a Setup that died
// before recording them.
func removePortRules(ctx context.Context, cfg Config, id string) error {
	// The whole table: listing a missing chain fails with messages that
	// differ between iptables backends and versions.
	out, err := iptables(ctx, "nat", "-S")
	if err != nil {
		return fmt.Errorf("netns: listing nat rules: %w", err)
	}
	tag := comment(id)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || f[1] != cfg.dnatChain() || !hasComment(f, tag) {
			continue
		}
		// Our arguments never contain spaces, so splitting on blanks and
		// dropping quotes gives back the rule.
		for i := range f {
			f[i] = strings.Trim(f[i], `"`)
		}
		f[0] = "-D"
		if _, err := iptables(ctx, "nat", f...); err != nil {
			return fmt.Errorf("netns: removing port rule: %w", err)
		}
	}
	return nil
}

// hasComment reports whether the -S fields carry exactly comment tag.
func hasComment(f []string, tag string) bool {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "--comment" && strings.Trim(f[i+1], `"`) == tag {
			return true
		}
	}
	return false
}
