package netx

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Connections dialed here carry TCP_USER_TIMEOUT: the kernel gives up a
// connection whose sent bytes stay unacknowledged for UnackedTimeout.
func TestDial_SetsUnackedTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, dial := range []func() (net.Conn, error){
		func() (net.Conn, error) { return DialContext(context.Background(), ln.Addr().String()) },
		func() (net.Conn, error) { return Dial(context.Background(), "tcp", ln.Addr().String()) },
	} {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) })
		c.Close()
		if gerr != nil || time.Duration(got)*time.Millisecond != UnackedTimeout {
			t.Errorf("TCP_USER_TIMEOUT = %d ms, %v; want %v", got, gerr, UnackedTimeout)
		}
	}
}
