//go:build !linux

package turn

import "net"

// SetSocketBuffers raises SO_RCVBUF and SO_SNDBUF to n bytes (capped by the
// system limits).
func SetSocketBuffers(c *net.UDPConn, n int) {
	_ = c.SetReadBuffer(n)
	_ = c.SetWriteBuffer(n)
}

// SocketBuffers is not reported on this platform.
func SocketBuffers(*net.UDPConn) (rcv, snd int) { return 0, 0 }
