// Package netns gives `strata run` containers their network: none, the
// host's, or (the default) a Linux bridge with one veth pair per container,
// an address from a private subnet, outbound NAT and published ports, the
// way Docker's default bridge network behaves. There is no daemon: what is
// shared between strata processes lives in a flock'd JSON file per bridge
// under [Config.StateDir].
//
// # Network namespace
//
// The container's network namespace is made by the sandbox child itself
// (CLONE_NEWNET); [Setup] configures it from the outside given the child's
// PID, before the child starts the command. Nothing is bind-mounted, so
// the namespace, and with it the container's end of the veth pair, goes
// away with the container's last process and a crashed strata leaves no
// mount behind; `strata exec` joins /proc/PID/ns/net of the container's
// init. The veth is made with its peer created directly inside the
// namespace ("ip link add … peer name eth0 netns PID"), and the inside is
// configured by a thread that setns(2)es into /proc/PID/ns/net and runs
// `ip -batch` from there.
//
// # Tools
//
// github.com/vishvananda/netlink is not a dependency of this module, so
// links, addresses and routes are made with iproute2's `ip` and packet
// filtering with `iptables` (either backend: iptables-nft puts the rules in
// the same nf_tables tables Docker and firewalld use, so accept rules are
// seen by them, which a private nft table would not be).
//
// # Rules
//
// Everything lives in chains named after the bridge, so several bridges
// (a test one, the real one) never touch each other's rules:
//
//	nat    STRATA-DNAT-<br>   one DNAT rule per published port (but those on loopback
//	                          or IPv6 host addresses), commented strata:<id>, not for
//	                          packets from the bridge; jumped to from PREROUTING and
//	                          OUTPUT for local destinations other than 127.0.0.0/8
//	nat    STRATA-POST-<br>   -s SUBNET ! -o BR -j MASQUERADE, from POSTROUTING
//	filter STRATA-FWD-<br>    accept from the bridge, replies and DNAT'd traffic to it,
//	                          drop the rest to it; inserted first in FORWARD
//
// # Published ports
//
// Like Docker with its default userland proxy: DNAT rules carry traffic
// that reaches a host address from another machine and traffic the host
// sends to its own non-loopback addresses, and a userspace [Proxy], which
// the caller runs in its per-container monitor process, carries the rest:
// 127.0.0.1 and ::1, traffic from containers to the host's addresses, and
// IPv6. The kernel alternative for loopback (route_localnet=1 on the bridge
// plus masquerading 127.0.0.0/8) is off here (route_localnet=0) and lets a
// container with CAP_NET_RAW, which containers have, reach host services
// bound to 127.0.0.1; the proxy also keeps the host port bound, so nothing
// else on the host can take it while the container runs.
package netns
