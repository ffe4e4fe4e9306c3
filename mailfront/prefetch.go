package mailfront

import (
	"context"
	"sync"

	"github.com/raisfs/raisfs/mailstore"
)

// Read-ahead of message bodies for commands that need many (a bulk
// FETCH BODY[], BODYSTRUCTURE of a range, SEARCH BODY/TEXT): each body
// costs a look-up at the masters and a read from a chunk server, so
// fetching them one after another leaves both mostly idle. Bodies are
// fetched by a few workers ahead of the writer, in order, at most
// prefetchWindow messages ahead, and only small ones (larger ones are read
// when their turn comes), so memory stays bounded.
const (
	prefetchWorkers = 8
	prefetchWindow  = 32
	prefetchMaxSize = 1 << 20
)

type bodyResult struct {
	b   []byte
	err error
}

type prefetcher struct {
	msgs    []mailstore.Message
	results []chan bodyResult // nil for messages not read ahead
	window  chan struct{}     // one token per body fetched and not yet taken
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// prefetch starts reading msgs' bodies ahead; stop releases it.
func (s *session) prefetch(ctx context.Context, msgs []mailstore.Message) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{msgs: msgs, results: make([]chan bodyResult, len(msgs)), window: make(chan struct{}, prefetchWindow), cancel: cancel}
	next := make(chan int)
	for i, m := range msgs {
		if m.Size <= prefetchMaxSize {
			p.results[i] = make(chan bodyResult, 1)
		}
	}
	p.wg.Go(func() { // hands out work in order, within the window
		defer close(next)
		for i := range msgs {
			if p.results[i] == nil {
				continue
			}
			select {
			case p.window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	})
	for range prefetchWorkers {
		p.wg.Go(func() {
			for i := range next {
				b, err := s.s.store.Body(ctx, msgs[i])
				p.results[i] <- bodyResult{b, err}
			}
		})
	}
	return p
}

// body returns message i's bytes, read ahead or read now.
func (p *prefetcher) body(ctx context.Context, s *session, i int) ([]byte, error) {
	if p.results[i] == nil {
		return s.s.store.Body(ctx, p.msgs[i])
	}
	select {
	case r := <-p.results[i]:
		<-p.window
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// skip releases message i's body unread (a search that decided without it).
func (p *prefetcher) skip(ctx context.Context, i int) {
	if p.results[i] == nil {
		return
	}
	select {
	case <-p.results[i]:
		<-p.window
	case <-ctx.Done():
	}
}

func (p *prefetcher) stop() {
	p.cancel()
	p.wg.Wait()
}
