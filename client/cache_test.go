package client

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/testcluster"
	"google.golang.org/protobuf/proto"
)

// With LookupCache, a repeated Get skips the masters; a cached look-up
// that has gone stale (here: replicas that are not there) is noticed, and
// the key is looked up again.
// cachingClient starts a cluster and a client with a look-up cache.
func cachingClient(t *testing.T) (*testcluster.Cluster, *Client, context.Context) {
	t.Helper()
	cl := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := New(ctx, Config{Masters: cl.MasterAddrs(), LookupCache: 10, Logger: testcluster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return cl, c, ctx
}

func TestLookupCache_StaleEntryIsLookedUpAgain(t *testing.T) {
	_, c, ctx := cachingClient(t)
	body := []byte("Subject: cached\r\n\r\nbody\r\n")
	if _, err := c.Put(ctx, "mail/x", bytes.NewReader(body), nil); err != nil {
		t.Fatal(err)
	}
	read := func() []byte {
		t.Helper()
		r, err := c.Get(ctx, "mail/x")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, _ := io.ReadAll(r)
		return b
	}
	if !bytes.Equal(read(), body) {
		t.Fatal("first read")
	}
	c.cacheMu.Lock()
	lr := c.cache["mail/x"]
	c.cacheMu.Unlock()
	if lr == nil {
		t.Fatal("look-up not cached")
	}
	stale := proto.Clone(lr).(*masterpb.LookupResponse)
	for _, r := range stale.Replicas {
		r.Address = "127.0.0.1:1" // nothing listens there
	}
	c.store("mail/x", stale)
	if !bytes.Equal(read(), body) {
		t.Fatal("read through a stale cache entry")
	}
	if got, err := c.GetRange(ctx, "mail/x", 0, 7); err != nil || string(got) != "Subject" {
		t.Fatalf("GetRange = %q, %v", got, err)
	}
	c.cacheMu.Lock()
	fixed := c.cache["mail/x"].Replicas[0].Address != "127.0.0.1:1"
	c.cacheMu.Unlock()
	if !fixed {
		t.Fatal("stale entry not replaced")
	}
	// A transaction that commits an upload fills the cache: no look-up
	// for mail just delivered.
	u, err := c.Upload(ctx, "mail/y", bytes.NewReader([]byte("fresh bytes")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, new(Txn).CommitObject(u)); err != nil {
		t.Fatal(err)
	}
	c.cacheMu.Lock()
	_, filled := c.cache["mail/y"]
	c.cacheMu.Unlock()
	if !filled {
		t.Fatal("committed upload not in the look-up cache")
	}
	if r, err := c.Get(ctx, "mail/y"); err != nil {
		t.Fatal(err)
	} else if b, _ := io.ReadAll(r); string(b) != "fresh bytes" {
		t.Fatalf("read %q", b)
	}
	if err := c.Delete(ctx, "mail/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "mail/x"); err == nil {
		t.Fatal("Get after Delete through the same client succeeded")
	}
}

// With LookupCache, a Put leaves its location in the cache: the Get that
// follows reads from the chunk servers without asking the masters (here
// they are all stopped).
func TestLookupCache_PutFillsIt(t *testing.T) {
	cl, c, ctx := cachingClient(t)
	body := []byte("Subject: put\r\n\r\nbody\r\n")
	if _, err := c.Put(ctx, "mail/p", bytes.NewReader(body), nil); err != nil {
		t.Fatal(err)
	}
	for i := range cl.MasterAddrs() {
		cl.StopMaster(i)
	}
	r, err := c.Get(ctx, "mail/p")
	if err != nil {
		t.Fatalf("Get with the masters down: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := c.Get(short, "mail/never-put"); err == nil {
		t.Fatal("Get of an unknown key succeeded with the masters down")
	}
}
