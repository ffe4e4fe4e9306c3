package master

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// streamLayer is Raft's TCP stream layer over a listener the master was
// given or opened itself. raft.NewTCPTransport can only listen on an
// address; taking a listener lets a supervisor (rais dev, systemd-style
// socket passing) hold the port from the moment it is chosen, so no other
// process can take it between choosing and binding.
//
// cut, when set, isolates the master from the group: dials fail and every
// connection's reads and writes fail (tests use it for partitions).
type streamLayer struct {
	net.Listener
	cut *atomic.Bool
}

var errCut = errors.New("raft transport cut")

func (l streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.cut.Load() {
		return nil, errCut
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	return cuttableConn{c, l.cut}, nil
}

func (l streamLayer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return cuttableConn{c, l.cut}, nil
}

type cuttableConn struct {
	net.Conn
	cut *atomic.Bool
}

func (c cuttableConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.cut.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	return n, err
}

func (c cuttableConn) Write(p []byte) (int, error) {
	if c.cut.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Write(p)
}

func newRaftTransport(ln net.Listener, cut *atomic.Bool, hlog hclog.Logger) (*raft.NetworkTransport, error) {
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || a.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft address %s is not advertisable: name a host, not 0.0.0.0", ln.Addr())
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  streamLayer{ln, cut},
		MaxPool: 5,
		Timeout: 10 * time.Second,
		Logger:  hlog,
	}), nil
}

// listen returns ln if set, else a new listener on addr.
func listen(ln net.Listener, addr, what string) (net.Listener, error) {
	if ln != nil {
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", what, addr, err)
	}
	return ln, nil
}
