package usage

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// The counters equal the payload bytes the clients' sockets received and
// sent, per app; unattributed peers are not counted.
func TestPacketConnCountsPayloadBytesPerAttributedApp(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA, appB})
	attr := NewAttribution()
	server := NewPacketConn(listenLoopback(t), attr)
	clientA, clientB, stranger := listenLoopback(t), listenLoopback(t), listenLoopback(t)
	attr.Set(clientA.LocalAddr().(*net.UDPAddr).AddrPort(), m.App(appA))
	// IPv4-mapped form of the same address is the same client.
	b := clientB.LocalAddr().(*net.UDPAddr).AddrPort()
	attr.Set(netip.AddrPortFrom(netip.AddrFrom16(b.Addr().As16()), b.Port()), m.App(appB))

	// A STUN binding response (first byte 0x01) is free: not counted.
	stun := append([]byte{0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 24)...)
	if _, err := server.WriteTo(stun, clientA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2000)
	_ = clientA.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := clientA.Read(buf); err != nil {
		t.Fatal(err)
	}
	received := map[*net.UDPConn]int{}
	for i, c := range []*net.UDPConn{clientA, clientB, stranger, clientA} {
		payload := make([]byte, 100+i*300)
		payload[0] = 0x80 // RTP
		if _, err := server.WriteTo(payload, c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		received[c] += n
	}
	for _, first := range []byte{0x00, 0x16} { // a STUN request (free), then 77 bytes of DTLS
		pkt := make([]byte, 77)
		pkt[0] = first
		if _, err := clientA.WriteTo(pkt, server.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := server.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	snap := map[string]Counters{}
	for _, r := range m.Snapshot() {
		snap[r.App] = r.Counters
	}
	if got := snap[appA]; got.EgressSFUBytes != uint64(received[clientA]) || got.IngressBytes != 77 {
		t.Fatalf("app A counters %+v, client A received %d and sent 77", got, received[clientA])
	}
	if got := snap[appB]; got.EgressSFUBytes != uint64(received[clientB]) {
		t.Fatalf("app B egress %d, client B received %d", got.EgressSFUBytes, received[clientB])
	}
	if _, ok := snap[UnknownApp]; ok {
		t.Fatal("bytes to an unattributed peer were counted")
	}
	attr.Delete(clientA.LocalAddr().(*net.UDPAddr).AddrPort(), m.App(appB)) // not its app: kept
	if attr.Len() != 2 {
		t.Fatalf("deleting with the wrong app removed the entry")
	}
	attr.Delete(clientA.LocalAddr().(*net.UDPAddr).AddrPort(), m.App(appA))
	if attr.Len() != 1 {
		t.Fatalf("%d attributed addresses after delete, want 1", attr.Len())
	}
}

// BenchmarkAttributedEgressCount is the per-packet accounting cost of the
// shared socket wrapper (lookup and add, without the system call).
func BenchmarkAttributedEgressCount(b *testing.B) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	attr := NewAttribution()
	for i := range 1000 {
		attr.Set(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 40000), m.App(appA))
	}
	addr := &net.UDPAddr{IP: net.IPv4(203, 0, 1, 7), Port: 40000}
	b.ReportAllocs()
	for b.Loop() {
		if ap, ok := addrPortOf(addr); ok {
			if app := attr.Lookup(ap); app != nil {
				app.egressSFU.Add(1200)
			}
		}
	}
}

// ICE reports the selected pair asynchronously: bytes sent before Set are
// credited when it arrives; addresses never attributed cost bounded memory.
func TestBytesBeforeAttributionAreCreditedWhenTheAppIsKnown(t *testing.T) {
	m := NewMeter(nil)
	m.SetApps([]string{appA})
	attr := NewAttribution()
	server := NewPacketConn(listenLoopback(t), attr)
	client := listenLoopback(t)
	dtls := make([]byte, 149)
	dtls[0] = 0x16
	if _, err := server.WriteTo(dtls, client.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got := m.App(appA).egressSFU.Load(); got != 0 {
		t.Fatalf("counted %d before attribution", got)
	}
	attr.Set(client.LocalAddr().(*net.UDPAddr).AddrPort(), m.App(appA))
	if _, err := server.WriteTo(dtls, client.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got := m.App(appA).egressSFU.Load(); got != 2*149 {
		t.Fatalf("egress %d, want both datagrams (298)", got)
	}
	// A scan of many addresses holds at most MaxPending of them.
	for i := range MaxPending + 100 {
		attr.hold(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 9), 10, 0)
	}
	attr.pmu.Lock()
	n, o := len(attr.pending), len(attr.order)
	attr.pmu.Unlock()
	if n != MaxPending || o != MaxPending {
		t.Fatalf("%d pending addresses (%d in order), bound %d", n, o, MaxPending)
	}
}
