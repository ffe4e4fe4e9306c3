package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
)

func TestClient_RecordsAndTxn(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	body := []byte("Subject: x\r\n\r\nbody\r\n")
	if _, err := c.Put(ctx, "mail/b/1", bytes.NewReader(body), nil); err != nil {
		t.Fatal(err)
	}
	rev, err := c.Commit(ctx, new(client.Txn).IfVersion("idx/mbox", 0).Put("idx/mbox", []byte("uidnext=2")).
		Put("idx/m/1", []byte("b/1")).LinkObject("mail/b/1-copy", "mail/b/1"))
	if err != nil || rev == 0 {
		t.Fatalf("Commit = %d, %v", rev, err)
	}
	r, ok, err := c.Record(ctx, "idx/mbox")
	if err != nil || !ok || string(r.Value) != "uidnext=2" || r.Version != rev {
		t.Fatalf("Record = %+v %v %v", r, ok, err)
	}
	if _, ok, _ := c.Record(ctx, "idx/m"); ok {
		t.Fatal("Record of a prefix of a key found a record")
	}
	if got := mustGet(t, c, "mail/b/1-copy"); !bytes.Equal(got, body) {
		t.Fatal("linked object reads other bytes")
	}
	// A stale compare fails and writes nothing.
	if _, err := c.Commit(ctx, new(client.Txn).IfVersion("idx/mbox", 0).Put("idx/other", nil)); !errors.Is(err, client.ErrCompareFailed) {
		t.Fatalf("stale Commit = %v, want ErrCompareFailed", err)
	}
	if _, ok, _ := c.Record(ctx, "idx/other"); ok {
		t.Fatal("a failed txn wrote")
	}
	if _, err := c.Commit(ctx, new(client.Txn).Put("", nil)); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("empty key = %v", err)
	}
	// Deleting the index entry and its object together.
	if _, err := c.Commit(ctx, new(client.Txn).Delete("idx/m/1").DeleteObject("mail/b/1-copy")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "mail/b/1-copy"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Stat of the deleted object = %v", err)
	}
	p, err := c.Records(ctx, "idx/", "", 0)
	if err != nil || len(p.Records) != 1 || p.Next != "" || p.Revision < rev {
		t.Fatalf("Records = %+v, %v", p, err)
	}
}

// Two clients (through different masters) increment one counter with
// compare-and-set: no increment is lost or applied twice.
func TestClient_TxnCounterIsLinearizable(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	addrs := cl.MasterAddrs()
	ctx := ctxT(t)
	const perClient = 25
	var wg sync.WaitGroup
	for i := range 2 {
		c := mustClient(t, []string{addrs[i], addrs[(i+1)%len(addrs)]}, nil)
		wg.Go(func() {
			for n := 0; n < perClient; {
				r, _, err := c.Record(ctx, "counter")
				if err != nil {
					t.Error(err)
					return
				}
				v, _ := strconv.Atoi(string(r.Value))
				_, err = c.Commit(ctx, new(client.Txn).IfVersion("counter", r.Version).Put("counter", []byte(strconv.Itoa(v+1))))
				switch {
				case err == nil:
					n++
				case errors.Is(err, client.ErrCompareFailed):
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	c := mustClient(t, addrs, nil)
	r, _, err := c.Record(ctx, "counter")
	if err != nil || string(r.Value) != fmt.Sprint(2*perClient) {
		t.Fatalf("counter = %q, %v; want %d", r.Value, err, 2*perClient)
	}
}

// An upload becomes an object only when the transaction that commits it
// does; one upload can be bound to several keys; content stored already
// is not uploaded again.
func TestClient_UploadCommittedByTxn(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	body := []byte("Subject: up\r\n\r\nuploaded\r\n")
	u, err := c.Upload(ctx, "mail/u1", bytes.NewReader(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "mail/u1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Stat before the commit = %v, want not found", err)
	}
	// A failed compare: neither the object nor the record.
	if _, err := c.Commit(ctx, new(client.Txn).IfVersion("idx", 99).CommitObject(u).Put("idx", []byte("1"))); !errors.Is(err, client.ErrCompareFailed) {
		t.Fatalf("Commit with a stale compare = %v", err)
	}
	if _, err := c.Stat(ctx, "mail/u1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Stat after a failed commit = %v, want not found", err)
	}
	if _, err := c.Commit(ctx, new(client.Txn).IfVersion("idx", 0).CommitObject(u).CommitObjectAs("mail/u2", u).Put("idx", []byte("1"))); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mail/u1", "mail/u2"} {
		if got := mustGet(t, c, k); !bytes.Equal(got, body) {
			t.Fatalf("%s reads %q", k, got)
		}
	}
	u3, err := c.Upload(ctx, "mail/u3", bytes.NewReader(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, new(client.Txn).CommitObject(u3)); err != nil {
		t.Fatalf("commit of a deduplicated upload: %v", err)
	}
	if st, err := c.Stat(ctx, "mail/u3"); err != nil || st.Hash != u.Hash {
		t.Fatalf("Stat(u3) = %+v, %v", st, err)
	}
}

// RecordsSince returns only the records written after a revision, and
// pages through a prefix even when a page holds none of them.
func TestClient_RecordsSince(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	var rev uint64
	for i := range 30 {
		r, err := c.Commit(ctx, new(client.Txn).Put(fmt.Sprintf("s/%02d", i), []byte("v")))
		if err != nil {
			t.Fatal(err)
		}
		if i == 24 {
			rev = r
		}
	}
	if _, err := c.Commit(ctx, new(client.Txn).Put("s/03", []byte("again"))); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := c.RecordsSince(ctx, "s/", after, 2, rev)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Records {
			got = append(got, r.Key)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if want := []string{"s/03", "s/25", "s/26", "s/27", "s/28", "s/29"}; !slices.Equal(got, want) {
		t.Fatalf("RecordsSince = %v, want %v", got, want)
	}
}
