package mailstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
)

func newStore(t *testing.T, addrs []string) *Store {
	t.Helper()
	c, err := client.New(context.Background(), client.Config{Masters: addrs, Logger: testcluster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return New(c, Options{MaxMessageSize: 1 << 20, Logger: testcluster.Logger(t)})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func msg(i int) NewMessage {
	return NewMessage{Body: fmt.Appendf(nil, "From: a@example.com\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i)}
}

func objects(t *testing.T, s *Store, user string) []client.Object {
	p, err := s.c.List(ctxT(t), userPrefix(user)+"b/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return p.Objects
}

// Two front ends append to one mailbox at once: every UID is handed out
// once, UIDNEXT and the counts add up.
func TestStore_ConcurrentAppendsGetDistinctUIDs(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	addrs := cl.MasterAddrs()
	stores := []*Store{newStore(t, addrs[:1]), newStore(t, addrs[1:])}
	ctx := ctxT(t)
	var mu sync.Mutex
	seen := map[uint32]bool{}
	var wg sync.WaitGroup
	const per = 15
	for w := range 4 {
		s := stores[w%2]
		wg.Go(func() {
			for i := range per {
				_, uid, err := s.Append(ctx, "alice", "INBOX", msg(w*100+i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[uid] {
					t.Errorf("UID %d handed out twice", uid)
				}
				seen[uid] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	m, err := stores[0].Mailbox(ctx, "alice", "inbox")
	if err != nil {
		t.Fatal(err)
	}
	if m.Messages != 4*per || m.UIDNext != 4*per+1 || m.Unseen != 4*per {
		t.Fatalf("mailbox after %d appends: %+v", 4*per, m)
	}
	msgs, _ := stores[1].Messages(ctx, "alice", m)
	if len(msgs) != 4*per || len(objects(t, stores[0], "alice")) != 4*per {
		t.Fatalf("%d messages, %d objects", len(msgs), len(objects(t, stores[0], "alice")))
	}
}

func TestStore_FlagsExpungeCopyMove(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	s := newStore(t, cl.MasterAddrs())
	ctx := ctxT(t)
	for i := range 4 {
		if _, _, err := s.Append(ctx, "bob", "INBOX", msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.Mailbox(ctx, "bob", "INBOX")
	got, _, err := s.StoreFlags(ctx, "bob", "INBOX", UIDs(1, 2), FlagsAdd, []string{`\seen`, "$Label1", `\DELETED`}, nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("StoreFlags = %v, %v", got, err)
	}
	if !slices.Equal(got[0].Flags, []string{"$Label1", `\Deleted`, `\Seen`}) {
		t.Fatalf("flags = %q, want canonical case", got[0].Flags)
	}
	after, _ := s.Mailbox(ctx, "bob", "INBOX")
	if after.HighestModSeq <= before.HighestModSeq || got[0].ModSeq != after.HighestModSeq || after.Unseen != 2 || after.Deleted != 2 {
		t.Fatalf("mailbox after STORE: %+v (before %+v), message modseq %d", after, before, got[0].ModSeq)
	}
	if _, _, err := s.StoreFlags(ctx, "bob", "INBOX", All(), FlagsAdd, []string{`\Recent`}, nil); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("setting \\Recent = %v", err)
	}
	// Copy message 1 to Archive: a link, not a second upload.
	if err := s.CreateMailbox(ctx, "bob", "Archive"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "bob", "Archive"); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("second create = %v", err)
	}
	src, dst, uv, err := s.Copy(ctx, "bob", "INBOX", "Archive", UIDs(1), false)
	if err != nil || !slices.Equal(src, []uint32{1}) || !slices.Equal(dst, []uint32{1}) || uv == 0 {
		t.Fatalf("Copy = %v %v %d %v", src, dst, uv, err)
	}
	objs := objects(t, s, "bob")
	if len(objs) != 5 {
		t.Fatalf("%d objects after a copy, want 5", len(objs))
	}
	// Expunge: only \Deleted messages go; the copy keeps the bytes alive.
	gone, err := s.Expunge(ctx, "bob", "INBOX", All())
	if err != nil || !slices.Equal(gone, []uint32{1, 2}) {
		t.Fatalf("Expunge = %v, %v", gone, err)
	}
	am, _ := s.Mailbox(ctx, "bob", "Archive")
	amsgs, _ := s.Messages(ctx, "bob", am)
	body, err := s.Body(ctx, amsgs[0])
	if err != nil || string(body) != string(msg(0).Body) {
		t.Fatalf("copied message after the original's expunge = %q, %v", body, err)
	}
	hdr, err := s.Header(ctx, "bob", am, amsgs[0])
	if err != nil || string(hdr) != "From: a@example.com\r\nSubject: 0\r\n\r\n" {
		t.Fatalf("Header = %q, %v", hdr, err)
	}
	// Move the rest: gone from INBOX, in Archive, same number of objects.
	src, dst, _, err = s.Copy(ctx, "bob", "INBOX", "Archive", All(), true)
	if err != nil || !slices.Equal(src, []uint32{3, 4}) || !slices.Equal(dst, []uint32{2, 3}) {
		t.Fatalf("Move = %v %v %v", src, dst, err)
	}
	in, _ := s.Mailbox(ctx, "bob", "INBOX")
	am, _ = s.Mailbox(ctx, "bob", "Archive")
	if in.Messages != 0 || am.Messages != 3 || len(objects(t, s, "bob")) != 3 {
		t.Fatalf("after move: INBOX %+v, Archive %+v, %d objects", in, am, len(objects(t, s, "bob")))
	}
	// Rename INBOX: its messages move, an empty INBOX with a new
	// UIDVALIDITY takes its place.
	if _, _, err := s.Append(ctx, "bob", "INBOX", msg(9)); err != nil {
		t.Fatal(err)
	}
	old, _ := s.Mailbox(ctx, "bob", "INBOX")
	if err := s.RenameMailbox(ctx, "bob", "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	in, _ = s.Mailbox(ctx, "bob", "INBOX")
	om, err := s.Mailbox(ctx, "bob", "Old")
	if err != nil || om.Messages != 1 || om.UIDValidity != old.UIDValidity || in.Messages != 0 || in.UIDValidity == old.UIDValidity {
		t.Fatalf("after RENAME INBOX: Old %+v %v, INBOX %+v", om, err, in)
	}
	// Rename a hierarchy, then delete: the messages and objects go.
	if err := s.CreateMailbox(ctx, "bob", "Archive/2026"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, "bob", "Archive", "Attic"); err != nil {
		t.Fatal(err)
	}
	var names []string
	mbs, _ := s.Mailboxes(ctx, "bob")
	for _, m := range mbs {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"INBOX", "Attic", "Attic/2026", "Old"}) {
		t.Fatalf("mailboxes = %q", names)
	}
	if err := s.DeleteMailbox(ctx, "bob", "Attic"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailbox(ctx, "bob", "Attic"); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("deleted mailbox = %v", err)
	}
	if n := len(objects(t, s, "bob")); n != 1 {
		t.Fatalf("%d objects after deleting Attic, want 1 (Old's)", n)
	}
	if err := s.DeleteMailbox(ctx, "bob", "inbox"); !errors.Is(err, ErrBadName) {
		t.Fatalf("delete INBOX = %v", err)
	}
}

func TestStore_DeliverStoresOnceAndRefusesBadInput(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	s := newStore(t, cl.MasterAddrs())
	ctx := ctxT(t)
	body := msg(1).Body
	errs := s.Deliver(ctx, []Recipient{{User: "a"}, {User: "b/../c"}, {User: "b"}, {User: "c", Mailbox: "Nope"}}, body, time.Time{})
	if errs[0] != nil || !errors.Is(errs[1], ErrBadName) || errs[2] != nil || !errors.Is(errs[3], ErrNoMailbox) {
		t.Fatalf("Deliver = %v", errs)
	}
	oa, ob := objects(t, s, "a"), objects(t, s, "b")
	if len(oa) != 1 || len(ob) != 1 || oa[0].Hash != ob[0].Hash {
		t.Fatalf("objects: a %v, b %v", oa, ob)
	}
	big := make([]byte, s.MaxMessageSize()+1)
	if errs := s.Deliver(ctx, []Recipient{{User: "a"}}, big, time.Time{}); !errors.Is(errs[0], ErrTooLarge) {
		t.Fatalf("oversize Deliver = %v", errs)
	}
	if _, _, err := s.Append(ctx, "a", "INBOX", NewMessage{Body: big}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize Append = %v", err)
	}
	if m, _ := s.Mailbox(ctx, "a", "INBOX"); m.Messages != 1 {
		t.Fatalf("refused messages counted: %+v", m)
	}
	if err := s.CreateMailbox(ctx, "a", "bad//name"); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name = %v", err)
	}
}

// COPY into the mailbox itself makes a second message (as mainstream
// servers do); MOVE into it gives the message a new UID, same object.
func TestStore_CopyIntoTheSameMailbox(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	s := newStore(t, cl.MasterAddrs())
	ctx := ctxT(t)
	if _, _, err := s.Append(ctx, "carol", "INBOX", msg(1)); err != nil {
		t.Fatal(err)
	}
	src, dst, _, err := s.Copy(ctx, "carol", "INBOX", "inbox", UIDs(1), false)
	if err != nil || !slices.Equal(src, []uint32{1}) || !slices.Equal(dst, []uint32{2}) {
		t.Fatalf("Copy into itself = %v %v %v", src, dst, err)
	}
	m, _ := s.Mailbox(ctx, "carol", "INBOX")
	msgs, _ := s.Messages(ctx, "carol", m)
	if m.Messages != 2 || len(msgs) != 2 || len(objects(t, s, "carol")) != 2 {
		t.Fatalf("after copying into itself: %+v, %d messages", m, len(msgs))
	}
	if h, err := s.Header(ctx, "carol", m, msgs[1]); err != nil || string(h) != "From: a@example.com\r\nSubject: 1\r\n\r\n" {
		t.Fatalf("copy's header = %q, %v", h, err)
	}
	src, dst, _, err = s.Copy(ctx, "carol", "INBOX", "INBOX", UIDs(1), true)
	if err != nil || !slices.Equal(src, []uint32{1}) || !slices.Equal(dst, []uint32{3}) {
		t.Fatalf("Move into itself = %v %v %v", src, dst, err)
	}
	m, _ = s.Mailbox(ctx, "carol", "INBOX")
	msgs, _ = s.Messages(ctx, "carol", m)
	if m.Messages != 2 || m.UIDNext != 4 || len(msgs) != 2 || msgs[0].UID != 2 || msgs[1].UID != 3 || len(objects(t, s, "carol")) != 2 {
		t.Fatalf("after moving into itself: %+v, %+v", m, msgs)
	}
	if h, err := s.Header(ctx, "carol", m, msgs[1]); err != nil || string(h) != "From: a@example.com\r\nSubject: 1\r\n\r\n" {
		t.Fatalf("moved message's header = %q, %v", h, err)
	}
}

// A DELETE cut short after the mailbox record went (the front end died)
// leaves a tombstone; Sweep removes the messages and their bytes.
func TestStore_SweepFinishesAnInterruptedDelete(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	s := newStore(t, cl.MasterAddrs())
	ctx := ctxT(t)
	if err := s.CreateMailbox(ctx, "dave", "Old"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := s.Append(ctx, "dave", "Old", msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := s.Mailbox(ctx, "dave", "Old")
	// What DeleteMailbox commits first, and then no purge.
	if _, err := s.c.Commit(ctx, new(client.Txn).IfVersion(mboxKey("dave", "Old"), m.Version).Delete(mboxKey("dave", "Old")).Put(goneKey("dave", m.ID), nil)); err != nil {
		t.Fatal(err)
	}
	if n := len(objects(t, s, "dave")); n != 3 {
		t.Fatalf("%d objects before the sweep", n)
	}
	if err := s.Sweep(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	if n := len(objects(t, s, "dave")); n != 0 {
		t.Fatalf("%d objects after the sweep", n)
	}
	p, err := s.c.Records(ctx, userPrefix("dave"), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Records {
		if !strings.HasSuffix(r.Key, "/user") && !strings.Contains(r.Key, "/mb/") {
			t.Errorf("left after the sweep: %s", r.Key)
		}
	}
}

// One delivery to many recipients (one of them twice): every INBOX gets
// the message, all objects are the same bytes stored once.
func TestStore_DeliverToManyRecipients(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	s := newStore(t, cl.MasterAddrs())
	ctx := ctxT(t)
	var rcpts []Recipient
	for i := range 20 {
		rcpts = append(rcpts, Recipient{User: fmt.Sprintf("u%d", i)})
	}
	rcpts = append(rcpts, Recipient{User: "u0"})
	for i, err := range s.Deliver(ctx, rcpts, msg(7).Body, time.Time{}) {
		if err != nil {
			t.Fatalf("recipient %d: %v", i, err)
		}
	}
	var hash [32]byte
	for i := range 20 {
		u := fmt.Sprintf("u%d", i)
		m, err := s.Mailbox(ctx, u, "INBOX")
		want := uint32(1)
		if i == 0 {
			want = 2
		}
		if err != nil || m.Messages != want {
			t.Fatalf("%s: %+v, %v", u, m, err)
		}
		for _, o := range objects(t, s, u) {
			if hash == ([32]byte{}) {
				hash = o.Hash
			}
			if o.Hash != hash {
				t.Fatalf("%s's object holds other bytes", u)
			}
		}
	}
}

// \Recent: while messages arrive, sessions on two front ends claim them,
// by ClaimRecent and in their own appends' commits; every UID is claimed
// by exactly one of them, and RecentCount counts what nobody claimed.
func TestStore_RecentIsClaimedOnce(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	addrs := cl.MasterAddrs()
	stores := []*Store{newStore(t, addrs[:1]), newStore(t, addrs[1:])}
	ctx := ctxT(t)
	for i := range 3 {
		if _, _, err := stores[0].Append(ctx, "rita", "INBOX", msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := stores[1].Mailbox(ctx, "rita", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := stores[1].RecentCount(ctx, "rita", m); err != nil || n != 3 {
		t.Fatalf("RecentCount before any claim = %d, %v; want 3", n, err)
	}
	var mu sync.Mutex
	owner := map[uint32]int{}
	claim := func(who int, r UIDRange) {
		mu.Lock()
		defer mu.Unlock()
		for uid := r.From; uid < r.To; uid++ {
			if o, ok := owner[uid]; ok {
				t.Errorf("UID %d claimed by %d and %d", uid, o, who)
			}
			owner[uid] = who
		}
	}
	var wg sync.WaitGroup
	const per = 12
	for w := range 4 {
		s := stores[w%2]
		wg.Go(func() {
			for i := range per {
				if w%2 == 0 {
					a, err := s.AppendMessage(ctx, "rita", "INBOX", NewMessage{Body: msg(w*100 + i).Body, ClaimRecent: true})
					if err != nil {
						t.Error(err)
						return
					}
					if !a.Recent.Contains(a.UID) {
						t.Errorf("append claimed %v, not its own UID %d", a.Recent, a.UID)
					}
					claim(w, a.Recent)
					continue
				}
				if _, _, err := s.Append(ctx, "rita", "INBOX", msg(w*100+i)); err != nil {
					t.Error(err)
					return
				}
				r, _, err := s.ClaimRecent(ctx, "rita", "INBOX")
				if err != nil {
					t.Error(err)
					return
				}
				claim(w, r)
			}
		})
	}
	wg.Wait()
	r, ch, err := stores[0].ClaimRecent(ctx, "rita", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	claim(9, r)
	if len(owner) != 3+4*per {
		t.Errorf("%d UIDs claimed, want %d", len(owner), 3+4*per)
	}
	if ch.After.FirstRecent != ch.After.UIDNext {
		t.Errorf("after claiming everything: %+v", ch.After)
	}
	// Nothing left: no write, RecentCount 0; a new message counts 1.
	if r, ch, err := stores[1].ClaimRecent(ctx, "rita", "INBOX"); err != nil || r != (UIDRange{}) || ch.From != ch.To {
		t.Errorf("claiming nothing = %v, %+v, %v", r, ch, err)
	}
	if _, _, err := stores[1].Append(ctx, "rita", "INBOX", msg(999)); err != nil {
		t.Fatal(err)
	}
	if m, err = stores[0].Mailbox(ctx, "rita", "INBOX"); err != nil {
		t.Fatal(err)
	}
	if n, err := stores[0].RecentCount(ctx, "rita", m); err != nil || n != 1 {
		t.Errorf("RecentCount after one more message = %d, %v; want 1", n, err)
	}
}

// A mailbox record from before \Recent existed (no FirstRecent): what is
// in it is not recent for the first session to select it; mail delivered
// after is.
func TestStore_RecentAfterUpgrade(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	s := newStore(t, cl.MasterAddrs())
	ctx := ctxT(t)
	for i := range 3 {
		if _, _, err := s.Append(ctx, "uma", "INBOX", msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Rewrite the record as an older version wrote it.
	m, err := s.Mailbox(ctx, "uma", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	old := m.rec()
	old.FirstRecent = 0
	if _, err := s.c.Commit(ctx, new(client.Txn).Put(mboxKey("uma", Inbox), mustJSON(old))); err != nil {
		t.Fatal(err)
	}
	if r, _, err := s.ClaimRecent(ctx, "uma", "INBOX"); err != nil || r != (UIDRange{}) {
		t.Fatalf("first claim after the upgrade = %v, %v; want nothing", r, err)
	}
	if _, _, err := s.Append(ctx, "uma", "INBOX", msg(9)); err != nil {
		t.Fatal(err)
	}
	if r, _, err := s.ClaimRecent(ctx, "uma", "INBOX"); err != nil || r != (UIDRange{From: 4, To: 5}) {
		t.Fatalf("claim after a new message = %v, %v; want [4, 5)", r, err)
	}
}
