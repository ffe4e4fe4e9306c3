package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
)

// runMailBench measures IMAP and LMTP server pairs the way the mail front
// end's targets are stated: any server (RAIS-FS's or Dovecot) can be
// measured. Given several, it takes every phase in turns: a slice of the
// phase on each server, then the next slice, so that load from elsewhere
// on the machine falls on all of them alike and their ratios mean
// something (scripts/mailbench-vs-dovecot).
func runMailBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("rais mailbench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	imapAddrs := fl.String("imap", "", "IMAP server HOST:PORT (no TLS), or several, comma-separated (required)")
	lmtpAddrs := fl.String("lmtp", "", "LMTP server HOST:PORT, one per --imap server (required)")
	names := fl.String("names", "", "a name per server for the table (default: the IMAP addresses)")
	user := fl.String("user", "demo", "user to deliver to and log in as; its INBOX should start empty")
	rcpt := fl.String("rcpt", "", "LMTP recipient address (default USER@localhost)")
	pass := fl.String("password", "demo", "password of --user")
	size := fl.Int("size", 8<<10, "message size in bytes")
	n := fl.Int("messages", 2000, "messages in the mailbox for the fetch and search phases (filled by the delivery and append phases)")
	ops := fl.Int("ops", 300, "operations per one-by-one phase")
	turns := fl.Int("turns", 3, "slices each phase is cut into, taken in turns on the servers (with several)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais mailbench --imap H:P[,H:P...] --lmtp H:P[,H:P...] [--names A,B...] [--user U --password P] [--size BYTES] [--messages N]\n\n"+
			"Delivers over LMTP with 1 and 4 connections, appends, fetches one by one and in bulk, stores\n"+
			"flags and searches, and prints operations per second for each phase. With several servers,\n"+
			"each phase is taken in turns and the table ends with the last server's figure over each other's.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	imaps, lmtps := strings.Split(*imapAddrs, ","), strings.Split(*lmtpAddrs, ",")
	labels := imaps
	if *names != "" {
		labels = strings.Split(*names, ",")
	}
	if *imapAddrs == "" || *lmtpAddrs == "" || len(lmtps) != len(imaps) || len(labels) != len(imaps) ||
		*n < 4**ops || *size < 100 || *turns < 1 || *ops < *turns {
		fmt.Fprintln(stderr, "rais mailbench: want --imap, as many --lmtp (and --names), --size >= 100, --messages >= 4 x --ops and --ops >= --turns >= 1")
		return errUsage
	}
	if *rcpt == "" {
		*rcpt = *user + "@localhost"
	}
	if len(imaps) == 1 {
		*turns = 1
	}
	b := &mailBench{size: *size, rcpt: *rcpt, run: time.Now().UnixNano()}
	for i := range imaps {
		b.servers = append(b.servers, &benchServer{name: labels[i], imap: imaps[i], lmtp: lmtps[i]})
	}
	defer b.close()
	// cut cuts count into turns parts.
	cut := func(count int) []int {
		out := make([]int, *turns)
		for i := range out {
			out[i] = count / *turns
		}
		out[len(out)-1] += count % *turns
		return out
	}
	// phase runs one measured phase: each slice on every server in turn.
	phase := func(what string, count int, fn func(s *benchServer, part int) (int, error)) error {
		r := b.phase(what)
		busy0, cpuOK := machineBusy()
		for _, part := range cut(count) {
			for i, s := range b.servers {
				start := time.Now()
				done, err := fn(s, part)
				if err != nil {
					return fmt.Errorf("%s on %s: %w", what, s.name, err)
				}
				r.count[i] += done
				r.took[i] += time.Since(start)
			}
		}
		if len(b.servers) == 1 {
			note := ""
			if busy1, ok := machineBusy(); ok && cpuOK {
				note = cpuNote(busy1-busy0, r.count[0], r.took[0])
			}
			fmt.Fprintf(stdout, "%-34s %8.1f /s   (%d in %s%s)\n", what, r.rate(0), r.count[0], r.took[0].Round(time.Millisecond), note)
		}
		return nil
	}

	// LMTP, 1 and 4 connections; each connection delivers one message per
	// transaction, as an MTA does.
	if err := phase("LMTP deliveries, 1 connection", *ops, func(s *benchServer, part int) (int, error) { return part, b.deliver(s, 1, part) }); err != nil {
		return err
	}
	if err := phase("LMTP deliveries, 4 connections", 2**ops, func(s *benchServer, part int) (int, error) { return part, b.deliver(s, 4, part) }); err != nil {
		return err
	}
	for _, s := range b.servers {
		if err := s.login(*user, *pass); err != nil {
			return err
		}
	}
	if err := phase("IMAP APPEND", *ops, func(s *benchServer, part int) (int, error) {
		for range part {
			if err := b.appendOne(s); err != nil {
				return 0, fmt.Errorf("append: %w", err)
			}
		}
		return part, nil
	}); err != nil {
		return err
	}
	for _, s := range b.servers {
		if err := b.fill(s, *n); err != nil {
			return err
		}
	}
	if err := phase("UID FETCH BODY[], one by one", *ops, func(s *benchServer, part int) (int, error) {
		for range part {
			msgs, err := s.c.Fetch(imap.UIDSetNum(s.pick()), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil || len(msgs) != 1 || len(msgs[0].BodySection) != 1 || len(msgs[0].BodySection[0].Bytes) < *size { // LMTP servers may prepend trace headers
				return 0, fmt.Errorf("UID FETCH BODY[]: %d messages, %w", len(msgs), err)
			}
		}
		return part, nil
	}); err != nil {
		return err
	}
	if err := phase("UID FETCH 1:* BODY[] (bulk), msgs", *turns, func(s *benchServer, part int) (int, error) {
		got := 0
		for range part {
			msgs, err := s.c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil || len(msgs) != len(s.uids) {
				return 0, fmt.Errorf("UID FETCH 1:* BODY[]: %d messages, %w", len(msgs), err)
			}
			got += len(msgs)
		}
		return got, nil
	}); err != nil {
		return err
	}
	if err := phase("UID STORE +FLAGS", *ops, func(s *benchServer, part int) (int, error) {
		for range part {
			flag := imap.FlagFlagged
			if s.stores%2 == 1 {
				flag = imap.FlagAnswered
			}
			s.stores++
			if _, err := s.c.Store(imap.UIDSetNum(s.pick()), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{flag}}, nil).Collect(); err != nil {
				return 0, fmt.Errorf("UID STORE: %w", err)
			}
		}
		return part, nil
	}); err != nil {
		return err
	}
	// Rounds: enough that a phase takes more than a few milliseconds on
	// either server (cheap searches vary most).
	for _, q := range []struct {
		what   string
		c      *imap.SearchCriteria
		rounds int
	}{
		{"SEARCH FLAGGED (index)", &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, 200},
		{"SEARCH HEADER Subject (headers)", &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "bench 1234"}}}, 20},
		{"SEARCH BODY (all bodies)", &imap.SearchCriteria{Body: []string{"no such words anywhere"}}, 5},
	} {
		rounds := max(q.rounds, *turns)
		if err := phase(fmt.Sprintf("%s, %d msgs", q.what, *n), rounds, func(s *benchServer, part int) (int, error) {
			for range part {
				if _, err := s.c.UIDSearch(q.c, nil).Wait(); err != nil {
					return 0, err
				}
			}
			return part, nil
		}); err != nil {
			return err
		}
	}
	if len(b.servers) > 1 {
		b.table(stdout, *turns)
	}
	return nil
}

// mailBench is one run of rais mailbench over one or more servers.
type mailBench struct {
	servers []*benchServer
	size    int
	rcpt    string
	run     int64 // names the run in every Message-ID
	results []*benchResult
}

// benchServer is one IMAP and LMTP server pair and its state in the run.
type benchServer struct {
	name, imap, lmtp string
	seq              int // messages sent so far
	c                *imapclient.Client
	uids             []imap.UID
	rng              *rand.Rand
	stores           int
}

// benchResult is one phase's operations and time on each server.
type benchResult struct {
	what  string
	count []int
	took  []time.Duration
}

func (r *benchResult) rate(i int) float64 { return float64(r.count[i]) / r.took[i].Seconds() }

// cpuNote gives the machine's CPU time per operation and the processors
// kept busy on average, for a phase of n operations that took took on one
// server; nothing for a phase shorter than a second (the kernel counts in
// 10 ms ticks). With several servers in turns it is not printed: each
// slice would be charged with the others' idle processes and with work
// spilling over from the slice before.
func cpuNote(busy time.Duration, n int, took time.Duration) string {
	if took < time.Second || n == 0 {
		return ""
	}
	return fmt.Sprintf(", %.2f ms of machine CPU each, %.2f CPUs busy",
		float64(busy)/float64(time.Millisecond)/float64(n), float64(busy)/float64(took))
}

func (b *mailBench) phase(what string) *benchResult {
	n := len(b.servers)
	r := &benchResult{what: what, count: make([]int, n), took: make([]time.Duration, n)}
	b.results = append(b.results, r)
	return r
}

// machineBusy is the CPU time all processors have spent busy since boot
// (/proc/stat: everything but idle and waiting for I/O), so that the CPU
// an operation costs the whole machine (server processes, kernel, this
// client) can be compared between servers that split their work
// differently: RAIS-FS over eight processes, Dovecot over a few.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return 0, false
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		if i != 3 && i != 4 && i < 8 { // not idle, iowait; not guest (counted in user)
			busy += n
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond, true // USER_HZ is 100 on Linux
}

func (b *mailBench) close() {
	for _, s := range b.servers {
		if s.c != nil {
			s.c.Close()
		}
	}
}

// body is message i of the run. Every run's messages differ from the
// last run's (the Message-ID names the run): a store that deduplicates
// content must not find them stored already.
func (b *mailBench) body(i int) []byte {
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: bench@example.com\r\nTo: %s\r\nSubject: bench %d\r\nMessage-ID: <%d.%d.bench@example.com>\r\n\r\n", b.rcpt, i, i, b.run)
	line := []byte("The quick brown fox jumps over the lazy dog; all work and no play.\r\n")
	for m.Len()+len(line) <= b.size-2 {
		m.Write(line)
	}
	for m.Len() < b.size-2 {
		m.WriteByte('x')
	}
	m.WriteString("\r\n")
	return m.Bytes()
}

// deliver sends total messages to s over conns LMTP connections at once.
func (b *mailBench) deliver(s *benchServer, conns, total int) error {
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	var mu sync.Mutex
	for c := range conns {
		share := total / conns
		if c == 0 {
			share += total % conns
		}
		wg.Go(func() {
			conn, err := net.DialTimeout("tcp", s.lmtp, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			lc := smtp.NewClientLMTP(conn)
			defer lc.Close()
			if err := lc.Hello("bench"); err != nil {
				errs <- err
				return
			}
			for range share {
				mu.Lock()
				s.seq++
				i := s.seq
				mu.Unlock()
				if err := lmtpOne(lc, b.rcpt, b.body(i)); err != nil {
					errs <- fmt.Errorf("delivery %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (s *benchServer) login(user, pass string) error {
	c, err := imapclient.DialInsecure(s.imap, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.c = c
	if err := c.Login(user, pass).Wait(); err != nil {
		return fmt.Errorf("%s: login: %w", s.name, err)
	}
	return nil
}

func (b *mailBench) appendOne(s *benchServer) error {
	s.seq++
	m := b.body(s.seq)
	cmd := s.c.Append("INBOX", int64(len(m)), nil)
	if _, err := cmd.Write(m); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// fill appends until s's INBOX holds n messages, then selects it and
// learns its UIDs.
func (b *mailBench) fill(s *benchServer, n int) error {
	for s.seq < n {
		if err := b.appendOne(s); err != nil {
			return fmt.Errorf("%s: fill: %w", s.name, err)
		}
	}
	sel, err := s.c.Select("INBOX", nil).Wait()
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if sel.NumMessages < uint32(n) {
		return fmt.Errorf("%s: INBOX has %d messages after the fill, want %d: did it start empty?", s.name, sel.NumMessages, n)
	}
	uids, err := s.c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.uids = uids.AllUIDs()
	s.rng = rand.New(rand.NewPCG(1, 2)) // the same picks on every server
	return nil
}

func (s *benchServer) pick() imap.UID { return s.uids[s.rng.IntN(len(s.uids))] }

// table prints every phase's rate on each server, then the last server's
// rate over each other's (the last is the one measured against the rest).
func (b *mailBench) table(w io.Writer, turns int) {
	last := len(b.servers) - 1
	fmt.Fprintf(w, "each phase in %d turns on each server\n%-44s", turns, "operations per second")
	for _, s := range b.servers {
		fmt.Fprintf(w, " %14s", s.name)
	}
	for _, s := range b.servers[:last] {
		fmt.Fprintf(w, " %18s", b.servers[last].name+"/"+s.name)
	}
	fmt.Fprintln(w)
	for _, r := range b.results {
		fmt.Fprintf(w, "%-44s", r.what)
		for i := range b.servers {
			fmt.Fprintf(w, " %14.1f", r.rate(i))
		}
		for i := range b.servers[:last] {
			fmt.Fprintf(w, " %18.2f", r.rate(last)/r.rate(i))
		}
		fmt.Fprintln(w)
	}
}

func lmtpOne(c *smtp.Client, rcpt string, body []byte) error {
	if err := c.Mail("bench@example.com", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	_, err = w.CloseWithLMTPResponse()
	return err
}
