package mailstore

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
)

// BenchmarkCatchUp measures what a session on another front end pays to
// catch up after one delivery to a mailbox of 5,000 messages: reading the
// whole index (what every session did before) against reading only the
// entries written since its version.
//
//	go test ./mailstore -run '^$' -bench CatchUp -benchtime 50x
func BenchmarkCatchUp(b *testing.B) {
	cl := testcluster.Start(b, testcluster.Options{})
	c, err := client.New(context.Background(), client.Config{Masters: cl.MasterAddrs(), Logger: testcluster.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	s := New(c, Options{Logger: testcluster.Logger(b)})
	ctx := context.Background()
	const n = 5000
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				if _, _, err := s.Append(ctx, "bench", Inbox, NewMessage{Body: fmt.Appendf(nil, "Subject: %d\r\n\r\nbody %d\r\n", i, i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	before, err := s.Mailbox(ctx, "bench", Inbox)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := s.Append(ctx, "bench", Inbox, NewMessage{Body: []byte("Subject: one more\r\n\r\nbody\r\n")}); err != nil {
		b.Fatal(err)
	}
	after, err := s.Mailbox(ctx, "bench", Inbox)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		since uint64
		want  int
	}{{"whole index", 0, n + 1}, {"changed since", before.Version, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				msgs, err := s.Changed(ctx, "bench", after, tc.since)
				if err != nil || len(msgs) != tc.want {
					b.Fatalf("%d messages, %v; want %d", len(msgs), err, tc.want)
				}
			}
		})
	}
}
