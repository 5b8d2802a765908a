package turn

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

// Class names the address range a peer address falls into. ClassPublic is the
// only class the relay reaches without an explicit allow rule.
type Class string

// Address classes, in the words the logs and docs use.
const (
	ClassPublic        Class = "public"
	ClassUnspecified   Class = "unspecified"   // 0.0.0.0, ::
	ClassThisNetwork   Class = "this-network"  // 0.0.0.0/8
	ClassLoopback      Class = "loopback"      // 127/8, ::1
	ClassPrivate       Class = "private"       // RFC 1918, fc00::/7
	ClassCGNAT         Class = "cgnat"         // 100.64/10 (Alibaba metadata lives here)
	ClassLinkLocal     Class = "link-local"    // 169.254/16, fe80::/10
	ClassMetadata      Class = "metadata"      // 169.254.169.254, fd00:ec2::254
	ClassMulticast     Class = "multicast"     // 224/4, ff00::/8
	ClassBroadcast     Class = "broadcast"     // 255.255.255.255
	ClassReserved      Class = "reserved"      // 240/4, IETF protocol assignments, non-global IPv6
	ClassBenchmarking  Class = "benchmarking"  // 198.18/15, 2001:2::/48
	ClassDocumentation Class = "documentation" // TEST-NETs, 2001:db8::/32, 3fff::/20
	ClassSiteLocal     Class = "site-local"    // fec0::/10
	ClassIPv4Compat    Class = "ipv4-compatible"
	ClassNAT64Local    Class = "nat64-local" // 64:ff9b:1::/48: routes to whatever the local translator reaches
	ClassTeredo        Class = "teredo"
)

var (
	// ErrPeerDenied is wrapped by every refusal of the relay policy.
	ErrPeerDenied = errors.New("peer address denied by relay policy")
)

type classRange struct {
	prefix netip.Prefix
	class  Class
}

// Order matters: the first matching range wins, so specific entries
// (metadata, broadcast) come before the ranges that contain them.
var v4Ranges = mustRanges([]struct {
	cidr  string
	class Class
}{
	{"0.0.0.0/32", ClassUnspecified},
	{"0.0.0.0/8", ClassThisNetwork},
	{"10.0.0.0/8", ClassPrivate},
	{"100.64.0.0/10", ClassCGNAT},
	{"127.0.0.0/8", ClassLoopback},
	{"169.254.169.254/32", ClassMetadata},
	{"169.254.0.0/16", ClassLinkLocal},
	{"172.16.0.0/12", ClassPrivate},
	{"192.0.0.0/24", ClassReserved}, // IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
	{"192.0.2.0/24", ClassDocumentation},
	{"192.31.196.0/24", ClassReserved}, // AS112-v4
	{"192.52.193.0/24", ClassReserved}, // AMT
	{"192.88.99.0/24", ClassReserved},  // deprecated 6to4 relay anycast
	{"192.168.0.0/16", ClassPrivate},
	{"192.175.48.0/24", ClassReserved}, // direct delegation AS112
	{"198.18.0.0/15", ClassBenchmarking},
	{"198.51.100.0/24", ClassDocumentation},
	{"203.0.113.0/24", ClassDocumentation},
	{"224.0.0.0/4", ClassMulticast},
	{"255.255.255.255/32", ClassBroadcast},
	{"240.0.0.0/4", ClassReserved},
})

var v6Ranges = mustRanges([]struct {
	cidr  string
	class Class
}{
	{"::/128", ClassUnspecified},
	{"::1/128", ClassLoopback},
	{"::/96", ClassIPv4Compat}, // deprecated IPv4-compatible form (RFC 4291)
	{"64:ff9b:1::/48", ClassNAT64Local},
	{"100::/64", ClassReserved}, // discard-only
	{"2001::/32", ClassTeredo},
	{"2001:2::/48", ClassBenchmarking},
	{"2001:db8::/32", ClassDocumentation},
	{"2001::/23", ClassReserved}, // IETF protocol assignments (ORCHID, AS112, ...)
	{"3fff::/20", ClassDocumentation},
	{"fd00:ec2::254/128", ClassMetadata},
	{"fc00::/7", ClassPrivate},
	{"fe80::/10", ClassLinkLocal},
	{"fec0::/10", ClassSiteLocal},
	{"ff00::/8", ClassMulticast},
})

var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	globalUnicast  = netip.MustParsePrefix("2000::/3")
)

func mustRanges(in []struct {
	cidr  string
	class Class
}) []classRange {
	out := make([]classRange, len(in))
	for i, r := range in {
		out[i] = classRange{prefix: netip.MustParsePrefix(r.cidr), class: r.class}
	}
	return out
}

// Classify says which range an address is in. IPv4-mapped addresses are
// classified as the IPv4 address they carry; NAT64 (64:ff9b::/96) and 6to4
// (2002::/16) addresses take the class of their embedded IPv4 address when
// that one is not public, so 64:ff9b::7f00:1 is loopback. IPv6 outside
// 2000::/3 that no entry names is reserved. A zero Addr is unspecified.
func Classify(ip netip.Addr) Class {
	if !ip.IsValid() {
		return ClassUnspecified
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is4() {
		for _, r := range v4Ranges {
			if r.prefix.Contains(ip) {
				return r.class
			}
		}
		return ClassPublic
	}
	if nat64WellKnown.Contains(ip) {
		return embeddedClass(ip, 12)
	}
	if sixToFour.Contains(ip) {
		return embeddedClass(ip, 2)
	}
	for _, r := range v6Ranges {
		if r.prefix.Contains(ip) {
			return r.class
		}
	}
	if !globalUnicast.Contains(ip) {
		return ClassReserved
	}
	return ClassPublic
}

// embeddedClass classifies the IPv4 address at byte offset off of ip.
func embeddedClass(ip netip.Addr, off int) Class {
	b := ip.As16()
	return Classify(netip.AddrFrom4([4]byte{b[off], b[off+1], b[off+2], b[off+3]}))
}

// Policy decides which peers a relay may reach. It is immutable; the server
// swaps in a new one when the configuration or the SFU endpoint list changes.
type Policy struct {
	allow []netip.Prefix
	// ingress is TURNIngress mode: only sfu endpoints are reachable.
	ingress bool
	sfu     map[netip.AddrPort]struct{}
	sfuIPs  map[netip.Addr]struct{}
	// self are the server's own listener addresses: relaying to them would
	// loop TURN into itself.
	self map[netip.AddrPort]struct{}
}

// WithSelf returns a copy of p that also denies the server's own listener
// addresses, whatever the allow rules say.
func (p *Policy) WithSelf(self []netip.AddrPort) *Policy {
	q := *p
	q.self = make(map[netip.AddrPort]struct{}, len(self))
	for _, ap := range self {
		q.self[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = struct{}{}
	}
	return &q
}

// NewPolicy builds a policy. allowCIDRs widen the default deny-list (literal
// matches only: an allowed 10.0.0.0/8 does not unlock 64:ff9b::a00:1). With
// ingressOnly set the relay reaches only the sfu endpoints (IP and port) and
// allowCIDRs are ignored. A malformed CIDR is an error, never skipped.
func NewPolicy(allowCIDRs []string, ingressOnly bool, sfu []netip.AddrPort) (*Policy, error) {
	p := &Policy{ingress: ingressOnly, sfu: map[netip.AddrPort]struct{}{}, sfuIPs: map[netip.Addr]struct{}{}}
	for _, c := range allowCIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("allowed peer CIDR %q: %w", c, err)
		}
		p.allow = append(p.allow, pfx.Masked())
	}
	for _, ap := range sfu {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		p.sfu[ap] = struct{}{}
		p.sfuIPs[ap.Addr()] = struct{}{}
	}
	return p, nil
}

// SFUEndpoints lists the SFU media endpoints the policy admits, sorted.
func (p *Policy) SFUEndpoints() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(p.sfu))
	for ap := range p.sfu {
		out = append(out, ap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out
}

// PermitIP is the check for CreatePermission, whose unit is an IP address.
// In TURNIngress mode the IP must belong to an SFU endpoint; the port is
// checked by PermitAddr on ChannelBind, Send and every relayed datagram.
func (p *Policy) PermitIP(ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	if p.ingress {
		if _, ok := p.sfuIPs[ip]; ok {
			return nil
		}
		return fmt.Errorf("%w: %s is not an SFU media endpoint", ErrPeerDenied, ip)
	}
	for _, pfx := range p.allow {
		if pfx.Contains(ip) {
			return nil
		}
	}
	if c := Classify(ip); c != ClassPublic {
		return fmt.Errorf("%w: %s is %s", ErrPeerDenied, ip, c)
	}
	return nil
}

// PermitAddr is the check for a transport address: ChannelBind, Send
// indications, TCP Connect and every datagram a relay socket sends.
func (p *Policy) PermitAddr(ap netip.AddrPort) error {
	ip := ap.Addr().WithZone("").Unmap()
	if ap.Port() == 0 {
		return fmt.Errorf("%w: port 0", ErrPeerDenied)
	}
	if _, ok := p.self[netip.AddrPortFrom(ip, ap.Port())]; ok {
		return fmt.Errorf("%w: %s is this TURN server's own listener", ErrPeerDenied, netip.AddrPortFrom(ip, ap.Port()))
	}
	if p.ingress {
		if _, ok := p.sfu[netip.AddrPortFrom(ip, ap.Port())]; ok {
			return nil
		}
		return fmt.Errorf("%w: %s is not an SFU media endpoint", ErrPeerDenied, netip.AddrPortFrom(ip, ap.Port()))
	}
	return p.PermitIP(ip)
}
