// Package mailfront is RAIS-FS's mail front end: an IMAP server (on
// go-imap v2) and an LMTP delivery endpoint (on go-smtp) over a
// mailstore.Store. Front ends are stateless: mailboxes, flags and bodies
// all live in the cluster, so any front end serves any user and killing
// one loses nothing a client was told was done.
package mailfront

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-smtp"

	"github.com/raisfs/raisfs/mailstore"
)

// Config configures a Server.
type Config struct {
	Store *mailstore.Store
	Users *Users
	// TLS, if set, enables STARTTLS on IMAP and LMTP.
	TLS *tls.Config
	// AllowPlaintext allows LOGIN without TLS from any address; without
	// it only loopback connections may.
	AllowPlaintext bool
	// CommandTimeout bounds each command's work on the cluster (default 30 s).
	CommandTimeout time.Duration
	// IdleInterval is how often IDLE looks for changes (default 500 ms).
	IdleInterval time.Duration
	// Hostname is announced in the LMTP greeting (default "localhost").
	Hostname string
	Logger   *slog.Logger
}

// Server serves IMAP and LMTP.
type Server struct {
	cfg     Config
	store   *mailstore.Store
	users   *Users
	log     *slog.Logger
	imap    *imapserver.Server
	lmtp    *smtp.Server
	metrics *metrics

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New returns a server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Users == nil {
		return nil, errors.New("mailfront: Store and Users are required")
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 30 * time.Second
	}
	if cfg.IdleInterval <= 0 {
		cfg.IdleInterval = 500 * time.Millisecond
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, store: cfg.Store, users: cfg.Users, log: cfg.Logger, done: make(chan struct{}), metrics: newMetrics(cfg.Store)}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s.metrics.sessions.Inc()
			return &session{s: s, conn: c}, nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
			imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapESearch: {}, imap.CapListExtended: {},
			imap.CapListStatus: {}, imap.CapMove: {}, imap.CapStatusSize: {}, imap.CapIdle: {},
			imap.CapUnselect: {}, imap.CapSASLIR: {}, imap.CapChildren: {}, imap.CapLiteralMinus: {},
			imap.CapAppendLimit: {}, imap.CapUnauthenticate: {}, imap.CapSearchRes: {}, imap.CapEnable: {},
			imap.CapSpecialUse: {}, imap.CapBinary: {},
		},
		Logger:    slogPrintf{s.log.With("proto", "imap")},
		TLSConfig: cfg.TLS,
		// Login enforces the policy per connection (TLS or loopback).
		InsecureAuth: true,
	})
	s.lmtp = smtp.NewServer(lmtpBackend{s})
	s.lmtp.LMTP = true
	s.lmtp.Domain = cfg.Hostname
	s.lmtp.TLSConfig = cfg.TLS
	s.lmtp.MaxMessageBytes = cfg.Store.MaxMessageSize()
	s.lmtp.MaxRecipients = 1000
	// RFC 5321 caps lines at 1000 octets, but mail with longer lines
	// exists and must be stored as it came; bound lines only against abuse.
	s.lmtp.MaxLineLength = 1 << 20
	s.lmtp.ReadTimeout = 5 * time.Minute
	s.lmtp.WriteTimeout = time.Minute
	s.lmtp.ErrorLog = slogPrintf{s.log.With("proto", "lmtp")}
	return s, nil
}

type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, v ...any) { p.l.Warn(fmt.Sprintf(format, v...)) }
func (p slogPrintf) Println(v ...any)               { p.l.Warn(fmt.Sprint(v...)) }

// ServeIMAP serves IMAP on ln until Close. It returns at once.
func (s *Server) ServeIMAP(ln net.Listener) {
	s.wg.Go(func() {
		if err := s.imap.Serve(quickAck{ln}); err != nil && !isClosed(err) {
			s.log.Error("imap serve", "err", err)
		}
	})
}

// ServeLMTP serves LMTP on ln until Close. It returns at once.
func (s *Server) ServeLMTP(ln net.Listener) {
	s.wg.Go(func() {
		if err := s.lmtp.Serve(ln); err != nil && !isClosed(err) {
			s.log.Error("lmtp serve", "err", err)
		}
	})
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed)
}

// Close stops both servers and ends every session.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	err := errors.Join(s.imap.Close(), s.lmtp.Close())
	s.wg.Wait()
	return err
}
