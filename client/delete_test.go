package client_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

// lossyMaster applies the first Delete and then fails it as if the answer
// was lost (the connection dropped after the commit); the retry then
// finds the key gone. A real cluster cannot lose an answer on cue, so this
// one master is a stand-in.
type lossyMaster struct {
	masterpb.UnimplementedMasterServer
	deletes atomic.Int32
}

func (m *lossyMaster) Delete(ctx context.Context, req *masterpb.DeleteRequest) (*masterpb.DeleteResponse, error) {
	if m.deletes.Add(1) == 1 {
		return nil, status.Error(codes.Unavailable, "connection lost after the delete was committed")
	}
	return nil, rpcerr.ToStatus(raisfs.ErrNotFound)
}

func (m *lossyMaster) Status(ctx context.Context, req *masterpb.StatusRequest) (*masterpb.StatusResponse, error) {
	return &masterpb.StatusResponse{}, nil
}

// Found by the chaos harness (seed 1, a leader paused mid-delete): a
// retried delete reported "not found" for a key its own first attempt had
// deleted, which no order of operations explains. Such a delete now
// reports that its outcome is unknown.
func TestClient_RetriedDeleteIsNotNotFound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &lossyMaster{}
	masterpb.RegisterMasterServer(srv, fake)
	go srv.Serve(ln)
	defer srv.Stop()
	c := mustClient(t, []string{ln.Addr().String()}, nil)
	err = c.Delete(ctxT(t), "alice/INBOX/1")
	if errors.Is(err, client.ErrNotFound) || !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("delete whose first attempt may have applied = %v, want ErrOutcomeUnknown", err)
	}
	if n := fake.deletes.Load(); n != 2 {
		t.Fatalf("%d delete attempts, want 2", n)
	}
	// A delete that fails outright with not found is still not found.
	fake.deletes.Store(1)
	if err := c.Delete(ctxT(t), "alice/INBOX/2"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("delete of a missing key = %v, want ErrNotFound", err)
	}
}
