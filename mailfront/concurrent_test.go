package mailfront_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/raisfs/raisfs/internal/testcluster"
)

// observer records what one session is told: the keywords listed in FLAGS
// responses, and every FLAGS list of every FETCH (solicited or not).
type observer struct {
	mu       sync.Mutex
	told     map[string]bool
	recentOf map[imap.UID]bool // UIDs this session was shown \Recent for
	errs     []string
}

func (o *observer) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, f := range d.Flags {
				o.told[string(f)] = true
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			if buf, err := m.Collect(); err == nil {
				o.saw(buf)
			}
		},
	}
}

// saw checks one FETCH's flags against what the session was told.
func (o *observer) saw(m *imapclient.FetchMessageBuffer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range m.Flags {
		switch {
		case f == `\Recent`:
			if m.UID != 0 {
				o.recentOf[m.UID] = true
			}
		case !strings.HasPrefix(string(f), `\`) && !o.told[string(f)]:
			o.errs = append(o.errs, fmt.Sprintf("keyword %s in FETCH before any FLAGS listed it", f))
		}
	}
}

// Sessions on two front ends append, set keywords, expunge and fetch at
// once in one mailbox while mail is delivered to it (which no session
// claims as \Recent until one is told of it). Every session ends with the same messages and
// flags; no message is \Recent in two sessions; no session sees a keyword
// it was not told of in FLAGS.
func TestIMAP_ConcurrentSessionsStayConsistent(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	fronts := []*front{startFront(t, cl.MasterAddrs(), 1<<20), startFront(t, cl.MasterAddrs(), 1<<20)}
	const sessions, rounds = 4, 25
	obs := make([]*observer, sessions)
	clients := make([]*imapclient.Client, sessions)
	for i := range sessions {
		obs[i] = &observer{told: map[string]bool{}, recentOf: map[imap.UID]bool{}}
		clients[i] = login(t, fronts[i%2].imap, "alice", "pw-a", obs[i].handler())
		sel, err := clients[i].Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range sel.Flags {
			obs[i].told[string(f)] = true
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var delivered sync.WaitGroup
	delivered.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := deliver(t, fronts[n%2].lmtp, fmt.Appendf(nil, "Subject: d%d\r\n\r\nbody\r\n", n), "alice@localhost"); err != nil {
				t.Errorf("delivery %d: %v", n, err)
				return
			}
		}
	})
	for i := range sessions {
		c, o := clients[i], obs[i]
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		wg.Go(func() {
			fetch := func() {
				msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
				if err != nil {
					t.Errorf("session %d: FETCH: %v", i, err)
				}
				for _, m := range msgs {
					o.saw(m)
				}
			}
			for r := range rounds {
				switch rng.IntN(5) {
				case 0, 1:
					body := fmt.Appendf(nil, "Subject: s%d r%02d\r\n\r\nbody\r\n", i, r)
					cmd := c.Append("INBOX", int64(len(body)), nil)
					cmd.Write(body)
					cmd.Close()
					if _, err := cmd.Wait(); err != nil {
						t.Errorf("session %d: APPEND: %v", i, err)
					}
				case 2:
					uid := imap.UID(1 + rng.IntN(r+5))
					kw := imap.Flag(fmt.Sprintf("$k%d", rng.IntN(6)))
					if _, err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{kw}}, nil).Collect(); err != nil {
						t.Errorf("session %d: STORE: %v", i, err)
					}
				case 3:
					uid := imap.UID(1 + rng.IntN(r+5))
					c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
					if err := c.Expunge().Close(); err != nil {
						t.Errorf("session %d: EXPUNGE: %v", i, err)
					}
				case 4:
					fetch()
				}
			}
			if err := c.Noop().Wait(); err != nil {
				t.Errorf("session %d: NOOP: %v", i, err)
			}
			fetch()
		})
	}
	wg.Wait()
	close(stop)
	delivered.Wait()
	// Once everyone is done, each session catches up and sees the same.
	var want string
	owner := map[imap.UID]int{}
	for i, c := range clients {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, m := range msgs {
			obs[i].saw(m)
			fmt.Fprintf(&b, "%d%v ", m.UID, stored(m.Flags))
		}
		if i == 0 {
			want = b.String()
		} else if b.String() != want {
			t.Errorf("session %d ends with\n  %s\nsession 0 with\n  %s", i, b.String(), want)
		}
		if len(msgs) == 0 || len(msgs) != int(c.Mailbox().NumMessages) {
			t.Errorf("session %d: %d messages fetched, client counts %d", i, len(msgs), c.Mailbox().NumMessages)
		}
		o := obs[i]
		o.mu.Lock()
		for _, e := range o.errs {
			t.Errorf("session %d: %s", i, e)
		}
		for _, uid := range slices.Sorted(maps.Keys(o.recentOf)) {
			if j, ok := owner[uid]; ok {
				t.Errorf("UID %d was \\Recent in sessions %d and %d", uid, j, i)
			}
			owner[uid] = i
		}
		o.mu.Unlock()
	}
	t.Logf("final: %s", want)
}
