//go:build !linux

package turn

import (
	"net"
	"net/netip"
)

// batchReader falls back to one datagram per system call.
type batchReader struct {
	c   *net.UDPConn
	buf [2048]byte
}

func newBatchReader(c *net.UDPConn) *batchReader { return &batchReader{c: c} }

func (b *batchReader) read() ([]byte, netip.AddrPort, error) {
	n, ap, err := b.c.ReadFromUDPAddrPort(b.buf[:])
	return b.buf[:n], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err
}
