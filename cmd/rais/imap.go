package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/mailfront"
	"github.com/raisfs/raisfs/mailstore"
)

// runIMAP runs the mail front end: IMAP and LMTP over the cluster.
func runIMAP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "adduser" {
		return runAddUser(args[1:], os.Stdin, stdout, stderr)
	}
	fl := flag.NewFlagSet("rais imap", flag.ContinueOnError)
	fl.SetOutput(stderr)
	masters := fl.String("masters", os.Getenv("RAIS_MASTERS"), "masters' API addresses, comma separated (default $RAIS_MASTERS)")
	imapAddr := fl.String("imap-addr", "127.0.0.1:1143", "HOST:PORT for IMAP (STARTTLS when --tls-cert is set); port 0 picks a free port")
	lmtpAddr := fl.String("lmtp-addr", "127.0.0.1:2424", "HOST:PORT for LMTP delivery from the mail transfer agent")
	usersFile := fl.String("users", "", "users file: NAME:BCRYPT-HASH lines, written by `rais imap adduser`; re-read when it changes (required)")
	tlsCert := fl.String("tls-cert", "", "PEM certificate for STARTTLS")
	tlsKey := fl.String("tls-key", "", "PEM private key for STARTTLS")
	allowPlain := fl.Bool("allow-plaintext", false, "allow LOGIN without TLS from any address (without it: loopback only)")
	maxSize := fl.Int64("max-message-size", 64<<20, "largest message accepted by APPEND and LMTP, in bytes")
	bodyCache := fl.Int64("body-cache", 64<<20, "memory for recently stored or read message bodies, in bytes (0: none); bodies never change, so a cached one is never stale")
	recordCache := fl.Int("record-cache", 100000, "mailbox records kept in memory under the leader's watch, so that a command does not ask the masters for its mailbox (0: ask every time); still linearizable: the leader invalidates them before any write")
	hostname := fl.String("hostname", "localhost", "name announced in the LMTP greeting")
	httpAddr := fl.String("http-addr", "", "HOST:PORT serving /metrics and /healthz (200 when the cluster answers; empty: none)")
	logLevel := fl.String("log-level", "info", "log level: debug, info, warn or error")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais imap --masters H:P,... --users FILE [--imap-addr H:P] [--lmtp-addr H:P] [--tls-cert F --tls-key F]\n"+
			"       rais imap adduser --users FILE NAME   (reads the password from stdin)\n\n"+
			"Serves IMAP and LMTP with every mailbox, flag and message stored in the cluster: front ends\n"+
			"keep no state, so run several behind any load balancer and lose any of them. The users file is\n"+
			"re-read when it changes (checked every 2 s) and on SIGHUP.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fl.NArg() > 0 || *masters == "" || *usersFile == "" || (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(stderr, "rais imap: want --masters, --users, and --tls-cert with --tls-key or neither")
		return errUsage
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	users, err := mailfront.LoadUsers(*usersFile)
	if err != nil {
		return err
	}
	// Users added, changed or removed in the file take effect without a
	// restart: checked every 2 s, and at once on SIGHUP.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var wg sync.WaitGroup
	defer wg.Wait()
	uctx, ucancel := context.WithCancel(ctx)
	defer ucancel()
	wg.Go(func() { watchUsers(uctx, users, hup, 2*time.Second, logger) })
	var tlsCfg *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	// The mail store's object keys are random and never bound twice, so
	// look-ups can be cached: a FETCH of a body skips the masters.
	// Mailbox records are read by every command: cached under the
	// leader's watch (client.Config.RecordCache).
	c, err := client.New(cctx, client.Config{Masters: strings.Split(*masters, ","), Logger: logger, LookupCache: 100000, RecordCache: *recordCache})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	srv, err := mailfront.New(mailfront.Config{
		Store: mailstore.New(c, mailstore.Options{MaxMessageSize: *maxSize, BodyCache: *bodyCache, Logger: logger}), Users: users, TLS: tlsCfg,
		AllowPlaintext: *allowPlain, Hostname: *hostname, Logger: logger,
	})
	if err != nil {
		return err
	}
	lns, err := inheritedListeners()
	if err != nil {
		return err
	}
	il, ll := lns["imap"], lns["lmtp"]
	if il == nil {
		if il, err = net.Listen("tcp", *imapAddr); err != nil {
			return fmt.Errorf("listen imap %s: %w", *imapAddr, err)
		}
	}
	if ll == nil {
		if ll, err = net.Listen("tcp", *lmtpAddr); err != nil {
			il.Close()
			return fmt.Errorf("listen lmtp %s: %w", *lmtpAddr, err)
		}
	}
	srv.ServeIMAP(il)
	srv.ServeLMTP(ll)
	var hs *http.Server
	if hl := lns["http"]; hl != nil || *httpAddr != "" {
		if hl == nil {
			if hl, err = net.Listen("tcp", *httpAddr); err != nil {
				srv.Close()
				return fmt.Errorf("listen http %s: %w", *httpAddr, err)
			}
		}
		hs = &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(hl) // ends when hs is shut down below
		fmt.Fprintf(stdout, "RAIS_IMAP_HTTP=%s\n", hl.Addr())
	}
	fmt.Fprintf(stdout, "RAIS_IMAP=%s\nRAIS_LMTP=%s\n", il.Addr(), ll.Addr())
	logger.Info("mail front end started", "imap", il.Addr().String(), "lmtp", ll.Addr().String())
	<-ctx.Done()
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs.Shutdown(sctx)
		cancel()
	}
	return srv.Close()
}

func runAddUser(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("rais imap adduser", flag.ContinueOnError)
	fl.SetOutput(stderr)
	usersFile := fl.String("users", "", "users file to add the user to (created if missing; required)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais imap adduser --users FILE NAME\n\nReads NAME's password from the first line of stdin, stores its bcrypt hash in FILE\n(replacing NAME's old one), and writes the file atomically.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fl.NArg() != 1 || *usersFile == "" {
		fl.Usage()
		return errUsage
	}
	pw, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	pw = strings.TrimRight(pw, "\r\n")
	if err := mailfront.AddUser(*usersFile, fl.Arg(0), pw); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %s written to %s\n", fl.Arg(0), *usersFile)
	return nil
}

// watchUsers reloads users when its file changes (checked every interval)
// and, even if it looks unchanged, when hup fires, until ctx ends. A file
// that does not parse leaves the users as they were; its error is logged
// once until it changes.
func watchUsers(ctx context.Context, users *mailfront.Users, hup <-chan os.Signal, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lastErr := ""
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-hup:
			force = true
		case <-t.C:
		}
		reloaded, err := users.Reload(force)
		switch {
		case err != nil:
			if err.Error() != lastErr || force {
				log.Error("users file not reloaded; keeping the users as they were", "err", err)
			}
			lastErr = err.Error()
		case reloaded:
			lastErr = ""
			log.Info("users file reloaded", "users", users.Len())
		}
	}
}
