package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ErrBadCIDR is wrapped when a trusted-proxy entry does not parse.
var ErrBadCIDR = errors.New("bad trusted proxy CIDR")

// TrustedProxies is the set of peers whose X-Forwarded-For is believed.
// The zero value trusts nobody. Immutable once built.
type TrustedProxies struct {
	prefixes []netip.Prefix
}

// ParseTrustedProxies parses CIDRs (or bare addresses) such as the pod
// configuration's TrustedProxies. It fails closed on any malformed entry.
func ParseTrustedProxies(cidrs []string) (*TrustedProxies, error) {
	t := &TrustedProxies{}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(c, "/") {
			p, err = netip.ParsePrefix(c)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(c)
			if err == nil {
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadCIDR, c, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Contains reports whether addr is a trusted proxy.
func (t *TrustedProxies) Contains(addr netip.Addr) bool {
	if t == nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP returns the address a request is rate limited by: the TCP peer,
// unless the peer is a trusted proxy, in which case the right-most
// X-Forwarded-For entry that is not itself a trusted proxy. Entries left of
// that one are client-controlled and ignored. A malformed entry stops the
// walk and the last trusted hop is used, so garbage cannot pick the key.
// ok is false only when RemoteAddr itself does not parse.
func ClientIP(r *http.Request, trusted *TrustedProxies) (ip netip.Addr, ok bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, err2 := netip.ParseAddr(r.RemoteAddr)
		if err2 != nil {
			return netip.Addr{}, false
		}
		peer = netip.AddrPortFrom(a, 0)
	}
	client := peer.Addr().Unmap().WithZone("")
	if !trusted.Contains(client) {
		return client, true
	}
	values := r.Header.Values("X-Forwarded-For")
	// Walk the headers and their comma-separated entries right to left.
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			j := strings.LastIndexByte(v, ',')
			entry := strings.TrimSpace(v[j+1:])
			if j < 0 {
				v = ""
			} else {
				v = v[:j]
			}
			if entry == "" {
				continue
			}
			a, err := parseXFFEntry(entry)
			if err != nil {
				return client, true
			}
			client = a
			if !trusted.Contains(a) {
				return client, true
			}
		}
	}
	return client, true
}

// parseXFFEntry accepts "1.2.3.4", "1.2.3.4:5678", "2001:db8::1" and
// "[2001:db8::1]:5678".
func parseXFFEntry(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap().WithZone(""), nil
}

// unknownAddr keys requests whose peer address cannot be parsed.
var unknownAddr = netip.IPv6Unspecified()
