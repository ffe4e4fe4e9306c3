package mailfront

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raisfs/raisfs/mailstore"
)

// \Recent (RFC 3501 2.3.2): a message is recent in exactly one session,
// the first to be told of it. The mailbox record holds the lowest UID no
// session has claimed (mailstore.Mailbox.FirstRecent); a session that has
// the mailbox selected read-write claims everything from there to UIDNEXT
// in one transaction, when it selects, when it learns of new messages,
// and in the commit of its own APPEND, so two sessions on any front ends
// never both see a message as recent. A session selected read-only
// (EXAMINE) claims nothing and sees as recent what was unclaimed when it
// selected. IMAP4rev2 dropped \Recent: a session that enabled it neither
// claims nor is told.

// recentFlag is \Recent; go-imap keeps its own copy internal.
const recentFlag imap.Flag = `\Recent`

// rev1 reports whether the session speaks IMAP4rev1 (has not enabled
// IMAP4rev2), so it is told of \Recent. Read once per SELECT (view.rev1):
// it copies the connection's capability set.
func (s *session) rev1() bool {
	return s.conn == nil || !s.conn.EnabledCaps().Has(imap.CapIMAP4rev2)
}

// selectMailbox reads mailbox name for SELECT (claiming its recent
// messages) or EXAMINE.
func (s *session) selectMailbox(ctx context.Context, name string, readOnly, rev1 bool) (mailstore.Mailbox, mailstore.UIDRange, error) {
	if !readOnly && rev1 {
		got, ch, err := s.s.store.ClaimRecent(ctx, s.user, name)
		if err == nil {
			return ch.After, got, nil
		}
		if errors.Is(err, mailstore.ErrNoMailbox) || errors.Is(err, mailstore.ErrBadName) {
			return mailstore.Mailbox{}, mailstore.UIDRange{}, err
		}
		// A claim that failed (the mailbox busy, an outcome unknown)
		// leaves the messages recent for no session; the SELECT goes on.
		s.s.log.Warn("claiming recent messages failed", "user", s.user, "mailbox", name, "err", err)
	}
	m, err := s.s.store.Mailbox(ctx, s.user, name)
	return m, mailstore.UIDRange{}, err
}

// claimNew claims the messages nobody has claimed when the session is
// about to be told of new ones (a Poll).
func (s *session) claimNew(ctx context.Context) {
	v := s.sel
	if v == nil || v.readOnly || len(v.fresh) == 0 || v.mbox.FirstRecent >= v.mbox.UIDNext || !v.rev1 {
		return
	}
	got, ch, err := s.s.store.ClaimRecent(ctx, s.user, v.name)
	if err != nil {
		s.s.log.Warn("claiming recent messages failed", "user", s.user, "mailbox", v.name, "err", err)
		return
	}
	v.claimed(got)
	v.applied(ch)
}

// claimed adds the UIDs r to the session's recent ones.
func (v *view) claimed(r mailstore.UIDRange) {
	if r.From >= r.To {
		return
	}
	if n := len(v.recent); n > 0 && v.recent[n-1].To == r.From {
		v.recent[n-1].To = r.To
		return
	}
	v.recent = append(v.recent, r)
}

// isRecent reports whether uid is \Recent in this session.
func (v *view) isRecent(uid uint32) bool {
	if v.peek != 0 && uid >= v.peek {
		return true
	}
	return slices.ContainsFunc(v.recent, func(r mailstore.UIDRange) bool { return r.Contains(uid) })
}

// numRecent counts the recent messages among those reported (v.uids, in
// UID order).
func (v *view) numRecent() uint32 {
	count := func(from, to uint32) int {
		i, _ := slices.BinarySearch(v.uids, from)
		j, _ := slices.BinarySearch(v.uids, to)
		return j - i
	}
	if v.peek != 0 {
		return uint32(count(v.peek, ^uint32(0)))
	}
	n := 0
	for _, r := range v.recent {
		n += count(r.From, r.To)
	}
	return uint32(n)
}

// flags is msg's FETCH FLAGS for this session.
func (v *view) flags(msg mailstore.Message) []imap.Flag {
	out := make([]imap.Flag, len(msg.Flags), len(msg.Flags)+1)
	for i, f := range msg.Flags {
		out[i] = imap.Flag(f)
	}
	if v.isRecent(msg.UID) {
		out = append(out, recentFlag)
	}
	return out
}

// has reports whether msg carries flag in this session (SEARCH).
func (v *view) has(msg mailstore.Message, flag imap.Flag) bool {
	if len(flag) == len(recentFlag) && strings.EqualFold(string(flag), string(recentFlag)) {
		return v.isRecent(msg.UID)
	}
	return msg.Has(string(flag))
}

// tellRecent sends the RECENT count with an EXISTS (always), or when
// expunges changed it, as Dovecot and Cyrus do.
func (s *session) tellRecent(w *imapserver.UpdateWriter, withExists bool) error {
	v := s.sel
	if !v.rev1 {
		return nil
	}
	n := v.numRecent()
	if !withExists && n == v.told {
		return nil
	}
	v.told = n
	return w.WriteNumRecent(n)
}
