//go:build linux

package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many datagrams one recvmmsg call may return.
const batchSize = 32

// batchBuf is the largest datagram kept whole; pion reads at most 1600.
const batchBuf = 2048

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batchReader reads a UDP socket with recvmmsg: one system call for up to
// batchSize queued datagrams. It is used by one goroutine only. The call is
// non-blocking (MSG_DONTWAIT; an empty socket waits in the poller), so it is
// issued as a raw system call, without the runtime's bookkeeping.
type batchReader struct {
	rc    syscall.RawConn
	msgs  [batchSize]mmsghdr
	iov   [batchSize]unix.Iovec
	names [batchSize]unix.RawSockaddrInet6
	bufs  [batchSize][batchBuf]byte
	n     int
	next  int
}

func newBatchReader(c *net.UDPConn) *batchReader {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	b := &batchReader{rc: rc}
	for i := range b.msgs {
		b.iov[i].Base = &b.bufs[i][0]
		b.iov[i].SetLen(batchBuf)
		b.msgs[i].hdr.Iov = &b.iov[i]
		b.msgs[i].hdr.SetIovlen(1)
		b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// read returns the next datagram and its source. The slice is valid until
// the next call.
func (b *batchReader) read() ([]byte, netip.AddrPort, error) {
	for b.next >= b.n {
		for i := range b.msgs {
			b.msgs[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
			b.msgs[i].hdr.Flags = 0
			b.msgs[i].len = 0
		}
		var got int
		var serr error
		err := b.rc.Read(func(fd uintptr) bool {
			r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), batchSize, unix.MSG_DONTWAIT, 0, 0)
			switch errno {
			case 0:
				got = int(r)
				return true
			case unix.EAGAIN, unix.EINTR:
				return false
			default:
				serr = errno
				return true
			}
		})
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		if serr != nil {
			return nil, netip.AddrPort{}, serr
		}
		b.n, b.next = got, 0
	}
	i := b.next
	b.next++
	n := int(b.msgs[i].len)
	if n > batchBuf {
		n = batchBuf
	}
	return b.bufs[i][:n], sockaddrAddrPort(&b.names[i]), nil
}

func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
