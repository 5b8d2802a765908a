package turn

import (
	"errors"
	"net/netip"
	"testing"
)

func TestClassifyEveryDeniedRangeAndItsEncodings(t *testing.T) {
	cases := []struct {
		ip   string
		want Class
	}{
		// IPv4 classes.
		{"0.0.0.0", ClassUnspecified},
		{"0.0.0.1", ClassThisNetwork},
		{"0.255.255.255", ClassThisNetwork},
		{"10.0.0.1", ClassPrivate},
		{"10.96.0.10", ClassPrivate}, // a typical kube-dns ClusterIP
		{"172.16.0.1", ClassPrivate},
		{"172.31.255.255", ClassPrivate},
		{"172.32.0.1", ClassPublic},
		{"192.168.1.1", ClassPrivate},
		{"100.64.0.1", ClassCGNAT},
		{"100.100.100.200", ClassCGNAT},
		{"100.127.255.255", ClassCGNAT},
		{"100.128.0.1", ClassPublic},
		{"127.0.0.1", ClassLoopback},
		{"127.1.2.3", ClassLoopback},
		{"169.254.169.254", ClassMetadata},
		{"169.254.1.1", ClassLinkLocal},
		{"192.0.0.170", ClassReserved},
		{"192.0.2.1", ClassDocumentation},
		{"192.88.99.1", ClassReserved},
		{"198.18.0.1", ClassBenchmarking},
		{"198.19.255.255", ClassBenchmarking},
		{"198.51.100.7", ClassDocumentation},
		{"203.0.113.9", ClassDocumentation},
		{"224.0.0.1", ClassMulticast},
		{"239.255.255.250", ClassMulticast},
		{"240.0.0.1", ClassReserved},
		{"255.255.255.255", ClassBroadcast},
		{"8.8.8.8", ClassPublic},
		{"1.1.1.1", ClassPublic},
		// IPv4-mapped IPv6.
		{"::ffff:127.0.0.1", ClassLoopback},
		{"::ffff:10.0.0.1", ClassPrivate},
		{"::ffff:169.254.169.254", ClassMetadata},
		{"::ffff:0.0.0.0", ClassUnspecified},
		{"::ffff:8.8.8.8", ClassPublic},
		// IPv4-compatible (deprecated): denied whatever it embeds.
		{"::127.0.0.1", ClassIPv4Compat},
		{"::8.8.8.8", ClassIPv4Compat},
		// NAT64 well-known prefix takes the embedded class.
		{"64:ff9b::7f00:1", ClassLoopback},
		{"64:ff9b::a9fe:a9fe", ClassMetadata},
		{"64:ff9b::a00:1", ClassPrivate},
		{"64:ff9b::808:808", ClassPublic},
		{"64:ff9b:1::1", ClassNAT64Local},
		{"64:ff9b:1:ffff::8.8.8.8", ClassNAT64Local},
		// 6to4 takes the embedded class.
		{"2002:7f00:1::", ClassLoopback},
		{"2002:7f00:1::1", ClassLoopback},
		{"2002:a9fe:a9fe::1", ClassMetadata},
		{"2002:c0a8:101::1", ClassPrivate},
		{"2002:808:808::1", ClassPublic},
		// IPv6 classes.
		{"::", ClassUnspecified},
		{"::1", ClassLoopback},
		{"fe80::1", ClassLinkLocal},
		{"fe80::1%eth0", ClassLinkLocal},
		{"fec0::1", ClassSiteLocal},
		{"fc00::1", ClassPrivate},
		{"fd12:3456::1", ClassPrivate},
		{"fd00:ec2::254", ClassMetadata},
		{"ff02::1", ClassMulticast},
		{"ff05::1:3", ClassMulticast},
		{"100::1", ClassReserved},
		{"2001::1", ClassTeredo},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", ClassTeredo},
		{"2001:2::1", ClassBenchmarking},
		{"2001:db8::1", ClassDocumentation},
		{"2001:10::1", ClassReserved},
		{"3fff::1", ClassDocumentation},
		{"4000::1", ClassReserved},
		{"::2", ClassIPv4Compat},
		{"2606:4700:4700::1111", ClassPublic},
		{"2a00:1450:4001::200e", ClassPublic},
	}
	for _, c := range cases {
		t.Run(c.ip, func(t *testing.T) {
			got := Classify(netip.MustParseAddr(c.ip))
			if got != c.want {
				t.Fatalf("Classify(%s) = %s, want %s", c.ip, got, c.want)
			}
		})
	}
	if got := Classify(netip.Addr{}); got != ClassUnspecified {
		t.Fatalf("Classify(zero) = %s, want unspecified", got)
	}
}

func TestDefaultPolicyAdmitsOnlyPublicPeers(t *testing.T) {
	p, err := NewPolicy(nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "10.1.2.3", "100.100.100.200", "169.254.169.254", "fd00:ec2::254", "::1", "255.255.255.255"} {
		if err := p.PermitIP(netip.MustParseAddr(ip)); !errors.Is(err, ErrPeerDenied) {
			t.Errorf("PermitIP(%s) = %v, want ErrPeerDenied", ip, err)
		}
	}
	if err := p.PermitIP(netip.MustParseAddr("8.8.8.8")); err != nil {
		t.Errorf("PermitIP(8.8.8.8) = %v, want nil", err)
	}
	if err := p.PermitAddr(netip.MustParseAddrPort("8.8.8.8:0")); !errors.Is(err, ErrPeerDenied) {
		t.Errorf("PermitAddr(port 0) = %v, want ErrPeerDenied", err)
	}
}

func TestAllowedCIDRsOpenOnlyTheirLiteralRange(t *testing.T) {
	p, err := NewPolicy([]string{"10.0.0.0/8", "127.0.0.1/32"}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"10.2.3.4", "::ffff:10.2.3.4", "127.0.0.1"} {
		if err := p.PermitIP(netip.MustParseAddr(ok)); err != nil {
			t.Errorf("PermitIP(%s) = %v, want allowed", ok, err)
		}
	}
	for _, deny := range []string{"127.0.0.2", "64:ff9b::a00:1", "2002:a00:1::", "192.168.0.1"} {
		if err := p.PermitIP(netip.MustParseAddr(deny)); !errors.Is(err, ErrPeerDenied) {
			t.Errorf("PermitIP(%s) = %v, want denied", deny, err)
		}
	}
	if _, err := NewPolicy([]string{"10.0.0.0/33"}, false, nil); err == nil {
		t.Fatal("a malformed CIDR was accepted")
	}
}

func TestIngressPolicyAdmitsOnlySFUMediaPorts(t *testing.T) {
	sfu := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:3478"), netip.MustParseAddrPort("10.0.0.6:3478")}
	p, err := NewPolicy([]string{"0.0.0.0/0"}, true, sfu)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PermitIP(netip.MustParseAddr("10.0.0.5")); err != nil {
		t.Errorf("SFU IP refused: %v", err)
	}
	if err := p.PermitAddr(netip.MustParseAddrPort("[::ffff:10.0.0.6]:3478")); err != nil {
		t.Errorf("SFU media endpoint (mapped form) refused: %v", err)
	}
	for _, deny := range []string{"10.0.0.5:443", "10.0.0.5:8080", "10.0.0.5:9090", "10.0.0.5:10250", "10.0.0.7:3478", "8.8.8.8:3478"} {
		if err := p.PermitAddr(netip.MustParseAddrPort(deny)); !errors.Is(err, ErrPeerDenied) {
			t.Errorf("PermitAddr(%s) = %v, want denied", deny, err)
		}
	}
	if err := p.PermitIP(netip.MustParseAddr("8.8.8.8")); !errors.Is(err, ErrPeerDenied) {
		t.Errorf("public IP allowed in ingress mode: %v", err)
	}
}
