// Package netx holds the TCP settings RAIS-FS dials its small-message
// connections with: the SDK to the masters, the masters to each other and
// to chunk servers (admin calls), the chunk servers to the masters
// (heartbeats). Uploads to chunk servers and copies between them dial
// plainly: see UnackedTimeout.
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
// still has its kernel acknowledge what it is sent, so it is not cut; but
// since Linux 5.11 a peer that keeps its receive window closed this long
// is (a chunk server not reading a large body while its disk stalls),
// which is why bulk transfers do not dial here.
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
