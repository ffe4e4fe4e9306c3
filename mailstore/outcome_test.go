package mailstore

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/api/txnpb"
	"github.com/raisfs/raisfs/internal/testcluster"
)

// lossyProxy stands in front of the real leader and, on cue, loses the
// answer to a transaction: after the leader applied it (lostAfter), or
// before it reached the leader (lostBefore). A real cluster cannot lose
// an answer on cue; everything else is the real thing.
type lossyProxy struct {
	masterpb.UnimplementedMasterServer
	leader                masterpb.MasterClient
	lostAfter, lostBefore atomic.Int32 // transactions still to lose
}

func (p *lossyProxy) Txn(ctx context.Context, t *txnpb.Txn) (*masterpb.TxnResponse, error) {
	if p.lostBefore.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection lost before the transaction went out")
	}
	r, err := p.leader.Txn(ctx, t)
	if err == nil && p.lostAfter.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection lost after the transaction applied")
	}
	return r, err
}

func (p *lossyProxy) Records(ctx context.Context, r *masterpb.RecordsRequest) (*masterpb.RecordsResponse, error) {
	return p.leader.Records(ctx, r)
}

func (p *lossyProxy) BeginPut(ctx context.Context, r *masterpb.BeginPutRequest) (*masterpb.BeginPutResponse, error) {
	return p.leader.BeginPut(ctx, r)
}

func (p *lossyProxy) Status(ctx context.Context, r *masterpb.StatusRequest) (*masterpb.StatusResponse, error) {
	return p.leader.Status(ctx, r)
}

func (p *lossyProxy) List(ctx context.Context, r *masterpb.ListRequest) (*masterpb.ListResponse, error) {
	return p.leader.List(ctx, r)
}

func (p *lossyProxy) Lookup(ctx context.Context, r *masterpb.LookupRequest) (*masterpb.LookupResponse, error) {
	return p.leader.Lookup(ctx, r)
}

// An APPEND whose index transaction's answer is lost is checked, not
// blindly retried: the message is in the mailbox exactly once, whether
// the lost transaction had applied or not.
func TestStore_AppendWithLostAnswers(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	conn, err := grpc.NewClient(cl.Leader().APIAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	proxy := &lossyProxy{leader: masterpb.NewMasterClient(conn)}
	srv := grpc.NewServer()
	masterpb.RegisterMasterServer(srv, proxy)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	s := newStore(t, []string{ln.Addr().String()})
	ctx := ctxT(t)
	if _, err := s.Mailbox(ctx, "erin", "INBOX"); err != nil { // INBOX made before the faults
		t.Fatal(err)
	}
	for i, lose := range []*atomic.Int32{&proxy.lostAfter, &proxy.lostBefore} {
		lose.Store(1)
		_, uid, err := s.Append(ctx, "erin", "INBOX", msg(i))
		if err != nil {
			t.Fatalf("append %d with a lost answer: %v", i, err)
		}
		if uid != uint32(i+1) {
			t.Fatalf("append %d got UID %d, want %d", i, uid, i+1)
		}
	}
	m, _ := s.Mailbox(ctx, "erin", "INBOX")
	msgs, _ := s.Messages(ctx, "erin", m)
	if m.Messages != 2 || len(msgs) != 2 || len(objects(t, s, "erin")) != 2 {
		t.Fatalf("after two appends with lost answers: %+v, %d entries, %d objects", m, len(msgs), len(objects(t, s, "erin")))
	}
	for i, mm := range msgs {
		if b, err := s.Body(ctx, mm); err != nil || string(b) != string(msg(i).Body) {
			t.Fatalf("message %d reads %q, %v", mm.UID, b, err)
		}
	}
}
