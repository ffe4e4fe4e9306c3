package mailfront_test

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/raisfs/raisfs/internal/testcluster"
)

// The per-command path of a selected session: a FETCH of one message's
// body, a SEARCH over the index, a flag change (a Raft commit), a NOOP (a real cluster in the test
// process; the client on loopback).
//
//	go test ./mailfront -run '^$' -bench IMAP -benchtime 2000x
func BenchmarkIMAP(b *testing.B) {
	cl := testcluster.Start(b, testcluster.Options{})
	f := startFront(b, cl.MasterAddrs(), 1<<20)
	c := login(b, f.imap, "alice", "pw-a", nil)
	const n = 500
	for i := range n {
		appendMsg(b, c, "INBOX", fmt.Appendf(nil, "Subject: %d\r\n\r\nbody %d\r\n", i, i))
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	b.Run("FetchOne", func(b *testing.B) {
		for i := range b.N {
			o := &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
			if _, err := c.Fetch(imap.UIDSetNum(imap.UID(1+i%n)), o).Collect(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SearchFlagged", func(b *testing.B) {
		for range b.N {
			if _, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("StoreFlag", func(b *testing.B) {
		for i := range b.N {
			op := imap.StoreFlagsAdd
			if (i/n)%2 == 1 {
				op = imap.StoreFlagsDel
			}
			sf := &imap.StoreFlags{Op: op, Flags: []imap.Flag{imap.FlagFlagged}}
			if _, err := c.Store(imap.UIDSetNum(imap.UID(1+i%n)), sf, nil).Collect(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Noop", func(b *testing.B) {
		for range b.N {
			if err := c.Noop().Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
