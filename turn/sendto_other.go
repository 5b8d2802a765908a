//go:build !linux

package turn

import (
	"net"
	"net/netip"
)

// rawSender is Linux only; elsewhere relays use the ordinary write.
type rawSender struct{}

func newRawSender(*net.UDPConn) *rawSender { return nil }

func (s *rawSender) send([]byte, netip.AddrPort) (bool, error) { return false, nil }
