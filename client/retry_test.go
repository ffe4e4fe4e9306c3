package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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
	deletes, commits atomic.Int32
	replica          string // a chunk server that takes any upload
}

func (m *lossyMaster) BeginPut(ctx context.Context, req *masterpb.BeginPutRequest) (*masterpb.BeginPutResponse, error) {
	return &masterpb.BeginPutResponse{Volume: 1, Replicas: []*masterpb.Replica{{Id: "cs1", Address: m.replica}}, Lease: "x", WriteQuorum: 1}, nil
}

// CommitPut commits the first time but the answer is lost; by the retry
// another client has deleted the key and put other content under it.
func (m *lossyMaster) CommitPut(ctx context.Context, req *masterpb.CommitPutRequest) (*masterpb.CommitPutResponse, error) {
	if m.commits.Add(1) == 1 {
		return nil, status.Error(codes.Unavailable, "connection lost after the commit")
	}
	return nil, rpcerr.ToStatus(fmt.Errorf("key is bound to other content: %w", raisfs.ErrConflict))
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

// Found by the chaos harness: a retried delete reported "not found" for a
// key its own first attempt had deleted (seed 1, a leader paused
// mid-delete), another retried delete removed the value a second client
// had put after the first attempt applied (seed 9), and a put whose first commit applied reported "conflict"
// after another client deleted the key and put other content under it
// (seed 5, the leader killed mid-commit). No order of operations explains
// either; both now report that their outcome is unknown.
func TestClient_RetriedCallsReportUnknownOutcomes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	defer cs.Close()
	srv := grpc.NewServer()
	fake := &lossyMaster{replica: strings.TrimPrefix(cs.URL, "http://")}
	masterpb.RegisterMasterServer(srv, fake)
	go srv.Serve(ln)
	defer srv.Stop()
	c := mustClient(t, []string{ln.Addr().String()}, nil)
	err = c.Delete(ctxT(t), "alice/INBOX/1")
	if errors.Is(err, client.ErrNotFound) || !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("delete whose first attempt may have applied = %v, want ErrOutcomeUnknown", err)
	}
	// Not retried: a retry could find the key gone, or delete the value
	// another client put meanwhile (one delete taking effect twice).
	if n := fake.deletes.Load(); n != 1 {
		t.Fatalf("%d delete attempts, want 1", n)
	}
	// The same for a put whose commit was answered "lost", then
	// "conflict": its bytes may well have been the key's for a while.
	if _, err := c.Put(ctxT(t), "alice/INBOX/3", strings.NewReader("hello"), nil); errors.Is(err, client.ErrConflict) || !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("put whose first commit may have applied, then conflict = %v, want ErrOutcomeUnknown", err)
	}
	// A delete that fails outright with not found is still not found.
	fake.deletes.Store(1)
	if err := c.Delete(ctxT(t), "alice/INBOX/2"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("delete of a missing key = %v, want ErrNotFound", err)
	}
}
