package turn

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestClientsOnSharedUDPAndTCPPortGetPeerData: UDP and TCP listen on the
// same ip:port, as `switchboard turn` and `switchboard dev` do by default
// (3478). A peer's datagrams reach each client over the transport it
// allocated on. Before the fix, a TCP client's allocation was mistaken for
// a UDP one (same listener address) and its ChannelData went out as UDP
// datagrams to the TCP client's port: nothing arrived.
func TestClientsOnSharedUDPAndTCPPortGetPeerData(t *testing.T) {
	pc, tl, err := ListenShared("127.0.0.1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	srv, err := New(Config{PacketConns: []net.PacketConn{pc}, Listeners: []net.Listener{tl},
		RelayIP: netip.MustParseAddr("127.0.0.1"), Pod: testPod("127.0.0.0/8"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	f := &fixture{srv: srv, udpAddr: addr, tcpAddr: addr}

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			c := dialRaw(t, network, addr, issue(t, f, keyA))
			c.mustAllocate(protoUDP)
			if got := c.channelBind(0x4001, peerAddr); got != 0 {
				t.Fatalf("ChannelBind = %d, want success", got)
			}
			// The peer learns the relay address from what the client sends.
			c.channelData(0x4001, []byte("ping over "+network))
			buf := make([]byte, 1500)
			_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, relay, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != "ping over "+network {
				t.Fatalf("peer got %q, %v", buf[:n], err)
			}
			want := "pong over " + network
			if _, err := peer.WriteToUDPAddrPort([]byte(want), relay); err != nil {
				t.Fatal(err)
			}
			got, err := c.readData(3 * time.Second)
			if err != nil || string(got) != want {
				t.Fatalf("client over %s got %q, %v; want %q", network, got, err, want)
			}
		})
	}
}
