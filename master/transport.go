package master

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// streamLayer is Raft's TCP stream layer over a listener the master was
// given or opened itself. raft.NewTCPTransport can only listen on an
// address; taking a listener lets a supervisor (rais dev, systemd-style
// socket passing) hold the port from the moment it is chosen, so no other
// process can take it between choosing and binding.
type streamLayer struct {
	net.Listener
}

func (l streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

func newRaftTransport(ln net.Listener, hlog hclog.Logger) (*raft.NetworkTransport, error) {
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || a.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft address %s is not advertisable: name a host, not 0.0.0.0", ln.Addr())
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  streamLayer{ln},
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
