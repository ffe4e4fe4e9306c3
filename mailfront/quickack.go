package mailfront

import (
	"net"
	"syscall"
)

// quickAck turns on TCP_QUICKACK on accepted connections. A client that
// sends an APPEND command line, waits for the "+ go ahead", then sends the
// literal meets Linux's delayed ACK: the server's small reply waits up to
// 40 ms for something to piggyback on. Dovecot sets TCP_QUICKACK for the
// same reason. (Linux clears the option again after some exchanges, so it
// is a mitigation, measured in ARCHITECTURE.md, not a guarantee.)
type quickAck struct{ net.Listener }

func (l quickAck) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
			})
		}
	}
	return c, nil
}
