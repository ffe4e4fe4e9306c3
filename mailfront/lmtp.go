package mailfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raisfs/raisfs/mailstore"
)

// lmtpBackend delivers into the store. A recipient is acknowledged (250)
// only once the message is durable on its replicas and indexed in that
// recipient's INBOX; each recipient gets its own status.
type lmtpBackend struct{ s *Server }

func (b lmtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &lmtpSession{s: b.s}, nil
}

type lmtpSession struct {
	s     *Server
	rcpts []string // as given
	users []string
}

var _ smtp.LMTPSession = (*lmtpSession)(nil)

func (l *lmtpSession) Reset()        { l.rcpts, l.users = nil, nil }
func (l *lmtpSession) Logout() error { return nil }

func (l *lmtpSession) Mail(from string, opts *smtp.MailOptions) error {
	if opts != nil && opts.Size > l.s.store.MaxMessageSize() {
		return tooBig(l.s.store.MaxMessageSize())
	}
	return nil
}

func tooBig(limit int64) error {
	return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message too large (limit %d bytes)", limit)}
}

func (l *lmtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	user, ok := l.s.users.Lookup(to)
	if !ok {
		l.s.metrics.deliveries.WithLabelValues("unknown user").Inc()
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	l.rcpts = append(l.rcpts, to)
	l.users = append(l.users, user)
	return nil
}

func (l *lmtpSession) Data(r io.Reader) error {
	return errors.New("LMTP only") // LMTPData is used in LMTP mode
}

func (l *lmtpSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	body, err := io.ReadAll(io.LimitReader(r, l.s.store.MaxMessageSize()+1))
	if err != nil {
		return err
	}
	if int64(len(body)) > l.s.store.MaxMessageSize() {
		return tooBig(l.s.store.MaxMessageSize())
	}
	// Mail transfer agents end lines with CRLF on the wire; go-smtp hands
	// the body over as received (dot-unstuffed), so it is stored as is.
	ctx, cancel := context.WithTimeout(context.Background(), l.s.cfg.CommandTimeout)
	defer cancel()
	rcpts := make([]mailstore.Recipient, len(l.users))
	for i, u := range l.users {
		rcpts[i] = mailstore.Recipient{User: u}
	}
	start := time.Now()
	errs := l.s.store.Deliver(ctx, rcpts, body, time.Now())
	l.s.metrics.deliverDur.Observe(time.Since(start).Seconds())
	for i, err := range errs {
		switch {
		case err == nil:
			l.s.metrics.deliveries.WithLabelValues("delivered").Inc()
			status.SetStatus(l.rcpts[i], nil)
		case errors.Is(err, mailstore.ErrTooLarge):
			l.s.metrics.deliveries.WithLabelValues("too large").Inc()
			status.SetStatus(l.rcpts[i], tooBig(l.s.store.MaxMessageSize()))
		default:
			l.s.metrics.deliveries.WithLabelValues("failed").Inc()
			l.s.log.Warn("lmtp delivery failed", "rcpt", l.rcpts[i], "err", err)
			status.SetStatus(l.rcpts[i], &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Storage unavailable, try again later"})
		}
	}
	return nil
}
