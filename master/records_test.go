package master

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/api/txnpb"
	"github.com/raisfs/raisfs/raftfsm"
)

func putRecord(t *testing.T, m masterpb.MasterClient, key, value string) error {
	t.Helper()
	_, err := m.Txn(ctxT(t), &txnpb.Txn{Ops: []*txnpb.TxnOp{{Op: &txnpb.TxnOp_Put{Put: &txnpb.RecordPut{Key: []byte(key), Value: []byte(value)}}}}})
	return err
}

func readRecord(t *testing.T, m masterpb.MasterClient, key string) (string, error) {
	t.Helper()
	// Short: a master with no leader waits for one until the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r, err := m.Records(ctx, &masterpb.RecordsRequest{Prefix: []byte(key)})
	if err != nil {
		return "", err
	}
	if len(r.Records) == 0 {
		return "", nil
	}
	return string(r.Records[0].Value), nil
}

// During a rolling upgrade a master on an older build would stop at the
// first Txn entry; until every master has announced a build that applies
// Txn, the leader refuses them as unavailable, and accepts them once the
// last one has.
func TestTxn_WaitsForEveryMasterToApplyIt(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "m3" {
			cfg.opsVersion = 1
		}
	})
	l := c.waitLeader()
	m := client(t, l.APIAddr())
	testPoll(t, 10*time.Second, "m3 announced as an older build", func() bool {
		ms, err := l.fsm.Masters()
		return err == nil && ms["m1"].OpsVersion == raftfsm.OpsVersion && ms["m2"].OpsVersion == raftfsm.OpsVersion && ms["m3"].OpsVersion == 1
	})
	err := putRecord(t, m, "k", "v")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "m3") {
		t.Fatalf("Txn with m3 on an older build = %v, want Unavailable naming m3", err)
	}
	if v, err := readRecord(t, m, "k"); err != nil || v != "" {
		t.Fatalf("refused Txn left record %q, %v", v, err)
	}
	// m3 upgraded: restarted with this build.
	i := c.index(c.masters[2])
	c.stop(i, false)
	c.cfgs[i].opsVersion = 0
	c.restart(i)
	testPoll(t, 10*time.Second, "a Txn accepted after m3's upgrade", func() bool {
		l := c.waitLeader()
		return putRecord(t, client(t, l.APIAddr()), "k", "v") == nil
	})
}
