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
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
)

// runMailBench measures an IMAP and LMTP server pair the way the mail
// front end's targets are stated: any server (RAIS-FS's or Dovecot) can be
// measured, so both can be compared in one run
// (scripts/mailbench-vs-dovecot does that).
func runMailBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("rais mailbench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	imapAddr := fl.String("imap", "", "IMAP server HOST:PORT (no TLS) (required)")
	lmtpAddr := fl.String("lmtp", "", "LMTP server HOST:PORT (required)")
	user := fl.String("user", "demo", "user to deliver to and log in as; its INBOX should start empty")
	rcpt := fl.String("rcpt", "", "LMTP recipient address (default USER@localhost)")
	pass := fl.String("password", "demo", "password of --user")
	size := fl.Int("size", 8<<10, "message size in bytes")
	n := fl.Int("messages", 2000, "messages in the mailbox for the fetch and search phases (filled by the delivery and append phases)")
	ops := fl.Int("ops", 300, "operations per one-by-one phase")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais mailbench --imap H:P --lmtp H:P [--user U --password P] [--size BYTES] [--messages N]\n\n"+
			"Delivers over LMTP with 1 and 4 connections, appends, fetches one by one and in bulk, stores\n"+
			"flags and searches, and prints operations per second for each phase.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if *imapAddr == "" || *lmtpAddr == "" || *n < 4**ops || *size < 100 {
		fmt.Fprintln(stderr, "rais mailbench: want --imap, --lmtp, --size >= 100 and --messages >= 4 x --ops")
		return errUsage
	}
	if *rcpt == "" {
		*rcpt = *user + "@localhost"
	}
	// Every run's messages differ from the last run's (the Message-ID
	// names the run): a store that deduplicates content must not find
	// them stored already.
	run := time.Now().UnixNano()
	body := func(i int) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: bench@example.com\r\nTo: %s\r\nSubject: bench %d\r\nMessage-ID: <%d.%d.bench@example.com>\r\n\r\n", *rcpt, i, i, run)
		line := []byte("The quick brown fox jumps over the lazy dog; all work and no play.\r\n")
		for b.Len()+len(line) <= *size-2 {
			b.Write(line)
		}
		for b.Len() < *size-2 {
			b.WriteByte('x')
		}
		b.WriteString("\r\n")
		return b.Bytes()
	}
	report := func(what string, count int, d time.Duration) {
		fmt.Fprintf(stdout, "%-34s %8.1f /s   (%d in %s)\n", what, float64(count)/d.Seconds(), count, d.Round(time.Millisecond))
	}
	seq := 0
	next := func() int { seq++; return seq }

	// LMTP, 1 and 4 connections; each connection delivers one message per
	// transaction, as an MTA does.
	deliverPhase := func(conns, total int) (time.Duration, error) {
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		var mu sync.Mutex
		start := time.Now()
		for range conns {
			wg.Go(func() {
				conn, err := net.DialTimeout("tcp", *lmtpAddr, 10*time.Second)
				if err != nil {
					errs <- err
					return
				}
				c := smtp.NewClientLMTP(conn)
				defer c.Close()
				if err := c.Hello("bench"); err != nil {
					errs <- err
					return
				}
				for k := 0; k < total/conns; k++ {
					mu.Lock()
					i := next()
					mu.Unlock()
					if err := lmtpOne(c, *rcpt, body(i)); err != nil {
						errs <- fmt.Errorf("delivery %d: %w", i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return time.Since(start), <-errs
	}
	if d, err := deliverPhase(1, *ops); err != nil {
		return err
	} else {
		report("LMTP deliveries, 1 connection", *ops, d)
	}
	if d, err := deliverPhase(4, 2**ops); err != nil {
		return err
	} else {
		report("LMTP deliveries, 4 connections", 2**ops, d)
	}

	c, err := imapclient.DialInsecure(*imapAddr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(*user, *pass).Wait(); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	appendOne := func(i int) error {
		b := body(i)
		cmd := c.Append("INBOX", int64(len(b)), nil)
		if _, err := cmd.Write(b); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		_, err := cmd.Wait()
		return err
	}
	start := time.Now()
	for range *ops {
		if err := appendOne(next()); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	report("IMAP APPEND", *ops, time.Since(start))
	for seq < *n {
		if err := appendOne(next()); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		return err
	}
	if sel.NumMessages < uint32(*n) {
		return fmt.Errorf("INBOX has %d messages after the fill, want %d: did it start empty?", sel.NumMessages, *n)
	}
	uids, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		return err
	}
	all := uids.AllUIDs()
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() imap.UID { return all[r.IntN(len(all))] }

	start = time.Now()
	for range *ops {
		msgs, err := c.Fetch(imap.UIDSetNum(pick()), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil || len(msgs) != 1 || len(msgs[0].BodySection) != 1 || len(msgs[0].BodySection[0].Bytes) < *size { // LMTP servers may prepend trace headers
			return fmt.Errorf("UID FETCH BODY[]: %d messages, %w", len(msgs), err)
		}
	}
	report("UID FETCH BODY[], one by one", *ops, time.Since(start))

	start = time.Now()
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != len(all) {
		return fmt.Errorf("UID FETCH 1:* BODY[]: %d messages, %w", len(msgs), err)
	}
	report("UID FETCH 1:* BODY[] (bulk), msgs", len(msgs), time.Since(start))

	start = time.Now()
	for i := range *ops {
		flag := imap.FlagFlagged
		if i%2 == 1 {
			flag = imap.FlagAnswered
		}
		if _, err := c.Store(imap.UIDSetNum(pick()), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{flag}}, nil).Collect(); err != nil {
			return fmt.Errorf("UID STORE: %w", err)
		}
	}
	report("UID STORE +FLAGS", *ops, time.Since(start))

	// Rounds: enough that a phase takes more than a few milliseconds on
	// either server (cheap searches vary most).
	for _, s := range []struct {
		what   string
		c      *imap.SearchCriteria
		rounds int
	}{
		{"SEARCH FLAGGED (index)", &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, 200},
		{"SEARCH HEADER Subject (headers)", &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "bench 1234"}}}, 20},
		{"SEARCH BODY (all bodies)", &imap.SearchCriteria{Body: []string{"no such words anywhere"}}, 5},
	} {
		rounds := s.rounds
		start = time.Now()
		for range rounds {
			if _, err := c.UIDSearch(s.c, nil).Wait(); err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
		}
		report(fmt.Sprintf("%s, %d msgs", s.what, len(all)), rounds, time.Since(start))
	}
	return nil
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
