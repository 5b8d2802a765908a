//go:build linux

package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSender sends datagrams on a relay socket with a non-blocking sendto
// issued as a raw system call inside RawConn.Write. The socket stays
// reference-counted by the poller (a concurrent Close is safe) while the
// call skips the runtime's system-call bookkeeping, which on a busy relay
// woke the runtime's monitor thread with a futex on a share of the sends.
// MSG_DONTWAIT keeps the call from ever blocking; a full buffer (EAGAIN)
// waits in the poller like any write.
type rawSender struct {
	rc syscall.RawConn
	fn func(fd uintptr) bool

	mu    sync.Mutex // the fields below belong to the call in progress
	p     []byte
	sa    unix.RawSockaddrInet4
	errno syscall.Errno
}

func newRawSender(c *net.UDPConn) *rawSender {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	s := &rawSender{rc: rc}
	s.sa.Family = unix.AF_INET
	s.fn = s.sendto
	return s
}

func (s *rawSender) sendto(fd uintptr) bool {
	var e syscall.Errno
	for {
		_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.p[0])), uintptr(len(s.p)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&s.sa)), unsafe.Sizeof(s.sa))
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN {
		return false
	}
	s.errno = e
	return true
}

// send writes p to ap. ok is false when it cannot (not IPv4, empty): the
// caller then uses the ordinary path.
func (s *rawSender) send(p []byte, ap netip.AddrPort) (ok bool, err error) {
	a := ap.Addr().Unmap()
	if s == nil || len(p) == 0 || !a.Is4() {
		return false, nil
	}
	s.mu.Lock()
	s.p = p
	s.sa.Addr = a.As4()
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.sa.Port))[:], ap.Port())
	s.errno = 0
	err = s.rc.Write(s.fn)
	if err == nil && s.errno != 0 {
		err = s.errno
	}
	s.p = nil
	s.mu.Unlock()
	return true, err
}
