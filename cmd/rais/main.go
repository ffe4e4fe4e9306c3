// Command rais runs the RAIS-FS servers.
//
//	rais dev [--dir DIR] [--chunkservers N]
//	rais master --id ID --dir DIR --raft-addr H:P --api-addr H:P --peers ID=H:P,...
//	rais chunkserver --id ID --dir DIR[,DIR2...] --addr HOST:PORT [--masters H:P,...]
//	rais imap --masters H:P,... --users FILE [--imap-addr H:P] [--lmtp-addr H:P]
//	rais hash [FILE]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/zeebo/blake3"
)

const usage = `usage: rais <command> [flags]

commands:
  dev           run a whole local cluster: 3 masters and 4 chunk servers (rais dev --help)
  master        run a master of the metadata Raft group (rais master --help)
  chunkserver   run a chunk server (rais chunkserver --help for flags)
  imap          run the IMAP and LMTP mail front end over a cluster (rais imap --help)
  mailbench     measure an IMAP+LMTP server pair (RAIS-FS's or another) (rais mailbench --help)
  chaos         run a cluster under faults and check nothing acknowledged is lost (rais chaos --help)
  hash          print the BLAKE3-256 content hash of a file or stdin, as blobs are named

`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// First signal: graceful shutdown via ctx. Second: exit at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second signal kills the process
	}()
	var err error
	switch os.Args[1] {
	case "chunkserver":
		err = runChunkServer(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "master":
		err = runMaster(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "dev":
		err = runDev(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "imap":
		err = runIMAP(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "mailbench":
		err = runMailBench(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "chaos":
		err = runChaos(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "hash":
		err = runHash(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "rais: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "rais %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func runHash(args []string, stdout io.Writer) error {
	var r io.Reader = os.Stdin
	if len(args) > 1 {
		return fmt.Errorf("at most one file: %w", errUsage)
	}
	if len(args) == 1 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	h := blake3.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%x\n", h.Sum(nil))
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
