//go:build linux

package turn

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The relay's raw sendto delivers the exact datagram from the relay
// socket's own address, also for an IPv4-mapped destination, and after the
// socket is closed it fails with net.ErrClosed instead of writing to a
// reused descriptor.
func TestRawSendDeliversFromTheRelaySocketAndFailsAfterClose(t *testing.T) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := newRawSender(relay)
	dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	for _, to := range []netip.AddrPort{dst, mapped} {
		ok, err := s.send([]byte("relayed "+to.String()), to)
		if !ok || err != nil {
			t.Fatalf("send to %s: ok %v, %v", to, ok, err)
		}
		buf := make([]byte, 1500)
		_ = sink.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := sink.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "relayed "+to.String() || from != relay.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("sink got %q from %s (%v); want the datagram from %s", buf[:n], from, err, relay.LocalAddr())
		}
	}
	_ = relay.Close()
	if ok, err := s.send([]byte("late"), dst); !ok || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after close: ok %v, %v; want net.ErrClosed", ok, err)
	}
}
