package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Mode is the --network value of `strata run`.
type Mode string

const (
	// ModeBridge attaches the container to the strata bridge (the default).
	ModeBridge Mode = "bridge"
	// ModeHost shares the host's network namespace.
	ModeHost Mode = "host"
	// ModeNone gives the container a namespace with only lo.
	ModeNone Mode = "none"
)

// ParseMode parses a --network value; "" and "default" mean bridge.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "default", string(ModeBridge):
		return ModeBridge, nil
	case string(ModeHost):
		return ModeHost, nil
	case string(ModeNone):
		return ModeNone, nil
	}
	return "", fmt.Errorf("network %s not found", s)
}

// Defaults used for zero Config fields.
const (
	DefaultBridge = "strata0"
	defaultSubnet = "10.89.0.0/16"
)

// DefaultSubnet is the subnet used when Config.Subnet is the zero value.
func DefaultSubnet() netip.Prefix { return netip.MustParsePrefix(defaultSubnet) }

// Config names one bridge network.
type Config struct {
	// StateDir holds the address allocations (BRIDGE.json, guarded by
	// BRIDGE.lock); typically ROOT/net. Required.
	StateDir string
	// Bridge is the bridge interface name; DefaultBridge when empty.
	Bridge string
	// Subnet is the containers' IPv4 subnet; the first address is the
	// gateway, on the bridge. DefaultSubnet when zero.
	Subnet netip.Prefix
	// MTU of the veth pairs; 0 takes the MTU of the host's default-route
	// interface (1500 when there is none), so containers never send
	// packets the uplink has to drop.
	MTU int
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.StateDir == "" {
		return c, errors.New("netns: no state directory given")
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if err := checkIfName(c.Bridge); err != nil {
		return c, fmt.Errorf("netns: bridge: %w", err)
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet()
	}
	if !c.Subnet.Addr().Is4() {
		return c, fmt.Errorf("netns: subnet %s is not IPv4", c.Subnet)
	}
	if c.Subnet.Bits() > 29 {
		return c, fmt.Errorf("netns: subnet %s is too small: it needs a gateway and room for containers", c.Subnet)
	}
	if c.Subnet.Masked() != c.Subnet {
		return c, fmt.Errorf("netns: subnet %s has host bits set (did you mean %s?)", c.Subnet, c.Subnet.Masked())
	}
	if c.MTU < 0 || c.MTU > 65535 {
		return c, fmt.Errorf("netns: invalid MTU %d", c.MTU)
	}
	return c, nil
}

// gateway is the subnet's first address, which the bridge carries.
func (c Config) gateway() netip.Addr { return c.Subnet.Addr().Next() }

// Chain names, per bridge so that several bridges never share rules.
func (c Config) dnatChain() string { return "STRATA-DNAT-" + c.Bridge }
func (c Config) postChain() string { return "STRATA-POST-" + c.Bridge }
func (c Config) fwdChain() string  { return "STRATA-FWD-" + c.Bridge }

// checkIfName accepts names the kernel and our iptables chain names take.
func checkIfName(name string) error {
	if len(name) > 15 {
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("interface name %q has a character other than letters, digits, '-', '_' and '.'", name)
		}
	}
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("invalid interface name %q", name)
	}
	return nil
}

// checkID accepts container IDs that are safe in iptables comments and
// file contents.
func checkID(id string) error {
	if id == "" {
		return errors.New("netns: empty container ID")
	}
	if len(id) > 128 {
		return fmt.Errorf("netns: container ID %.20q... is longer than 128 bytes", id)
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '-' || r == '_' || r == '.')
		if !ok {
			return fmt.Errorf("netns: invalid container ID %q: only letters, digits and (not first) '-', '_', '.'", id)
		}
	}
	return nil
}

// hostMTU returns the MTU of the interface carrying the IPv4 default
// route, or 1500.
func hostMTU() int {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return 1500
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		m, err := os.ReadFile("/sys/class/net/" + f[0] + "/mtu")
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(m))); err == nil && n >= 576 {
			return n
		}
	}
	return 1500
}
