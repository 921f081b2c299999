package dns

import "net/netip"

// IsPublic reports whether ip is a public unicast address: one that names
// the same endpoint from every network namespace, so that a name resolved
// in one namespace may name it in another (cross_namespace: public_only).
//
// Not public: unspecified, loopback, link-local, multicast, broadcast,
// private (RFC 1918, ULA fc00::/7), shared (CGNAT 100.64.0.0/10), "this
// network" 0.0.0.0/8, IETF protocol assignments 192.0.0.0/24,
// documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32), benchmarking 198.18.0.0/15, reserved 240.0.0.0/4,
// site-local fec0::/10, the IPv4-compatible and other ::/80 forms, and the
// IPv6 forms that embed an IPv4 address that may be private (NAT64
// 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32).
func IsPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	if ip.Is4() {
		b := ip.As4()
		switch {
		case b[0] == 0, // this network
			b[0] == 100 && b[1]&0xc0 == 64,           // shared address space (CGNAT)
			b[0] == 192 && b[1] == 0 && b[2] == 0,    // IETF protocol assignments
			b[0] == 192 && b[1] == 0 && b[2] == 2,    // TEST-NET-1
			b[0] == 198 && b[1] == 51 && b[2] == 100, // TEST-NET-2
			b[0] == 203 && b[1] == 0 && b[2] == 113,  // TEST-NET-3
			b[0] == 198 && b[1]&0xfe == 18,           // benchmarking
			b[0] >= 240:                              // reserved
			return false
		}
		return true
	}
	b := ip.As16()
	switch {
	case [10]byte(b[:10]) == [10]byte{}, // ::/80: IPv4-compatible and the like
		b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b, // NAT64
		b[0] == 0x20 && b[1] == 0x02,                                 // 6to4
		b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00, // Teredo
		b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8, // documentation
		b[0] == 0xfe && b[1]&0xc0 == 0xc0:                            // site-local
		return false
	}
	return true
}
