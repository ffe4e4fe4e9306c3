package netx

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func controlUnacked(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(UnackedTimeout/time.Millisecond))
	})
	if err != nil {
		return err
	}
	return serr
}
