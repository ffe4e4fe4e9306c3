// Package netx holds the TCP settings RAIS-FS dials with: the SDK (to
// masters and chunk servers), the masters (to each other and to chunk
// servers) and the chunk servers (heartbeats, copies between them).
package netx

import (
	"context"
	"net"
	"time"
)

// UnackedTimeout is how long bytes sent on a connection may stay
// unacknowledged before the kernel gives the connection up
// (TCP_USER_TIMEOUT, Linux). A peer cut off by the network (a partition,
// a dead host) then fails the calls in flight on it within about this
// long, and the caller tries another master, instead of each call waiting
// out its whole attempt timeout (5 s). A peer that is slow or paused
// still has its kernel acknowledge what it is sent, so it is not cut.
const UnackedTimeout = 2 * time.Second

// DialContext dials addr over TCP with UnackedTimeout set (where the
// platform has it), for grpc.WithContextDialer.
func DialContext(ctx context.Context, addr string) (net.Conn, error) {
	return Dial(ctx, "tcp", addr)
}

// Dial is DialContext with a network, for http.Transport.DialContext.
func Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: controlUnacked}
	return d.DialContext(ctx, network, addr)
}
