package netns

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeBridge, "default": ModeBridge, "bridge": ModeBridge, "host": ModeHost, "none": ModeNone} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("mynet"); err == nil || err.Error() != "network mynet not found" {
		t.Errorf("unknown network: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{StateDir: "/x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != "strata0" || c.Subnet.String() != "10.89.0.0/16" || c.gateway().String() != "10.89.0.1" {
		t.Errorf("defaults: %+v", c)
	}
	if c.dnatChain() != "STRATA-DNAT-strata0" || c.postChain() != "STRATA-POST-strata0" || c.fwdChain() != "STRATA-FWD-strata0" {
		t.Errorf("chains: %s %s %s", c.dnatChain(), c.postChain(), c.fwdChain())
	}
	// The longest bridge name still gives chain names iptables accepts.
	c, err = Config{StateDir: "/x", Bridge: "abcdefghijklmno"}.withDefaults()
	if err != nil || len(c.dnatChain()) > 28 {
		t.Errorf("15-byte bridge: %v, %q", err, c.dnatChain())
	}

	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no state directory"},
		{Config{StateDir: "/x", Bridge: "abcdefghijklmnop"}, "longer than 15"},
		{Config{StateDir: "/x", Bridge: "br 0"}, "character other than"},
		{Config{StateDir: "/x", Bridge: ".."}, "invalid interface name"},
		{Config{StateDir: "/x", Subnet: netip.MustParsePrefix("fd00::/64")}, "not IPv4"},
		{Config{StateDir: "/x", Subnet: netip.MustParsePrefix("10.0.0.0/30")}, "too small"},
		{Config{StateDir: "/x", Subnet: netip.MustParsePrefix("10.0.0.1/24")}, "did you mean 10.0.0.0/24"},
		{Config{StateDir: "/x", MTU: -1}, "invalid MTU"},
	}
	for _, tc := range bad {
		if _, err := tc.cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"a", "c1", "0123abcdef", "my_box.1-2"} {
		if err := checkID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", "-x", ".x", "a b", "a\"b", "a/b", strings.Repeat("a", 129)} {
		if err := checkID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestNames(t *testing.T) {
	v := vethName("strata0", "c1")
	if len(v) > 15 || !strings.HasPrefix(v, "vst") || v != vethName("strata0", "c1") {
		t.Errorf("veth name %q", v)
	}
	if v == vethName("strata0", "c2") || v == vethName("stt0", "c1") {
		t.Error("veth names collide")
	}
	if got := macFor(netip.MustParseAddr("10.89.1.2")); got != "02:53:0a:59:01:02" {
		t.Errorf("mac %s", got)
	}
	if m := hostMTU(); m < 576 || m > 65535 {
		t.Errorf("host MTU %d", m)
	}
}
