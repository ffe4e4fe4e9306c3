package mailfront

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/mailstore"
)

// session is one IMAP connection. It holds no mailbox state beyond the
// client's view of the selected mailbox (sequence numbers, what has been
// reported): everything else is read from the cluster per command, so
// any front end can serve any user and a front end's death loses nothing.
type session struct {
	s    *Server
	conn *imapserver.Conn
	user string
	sel  *view
	// synced: the command being served read the mailbox already, so the
	// Poll that follows it reports without reading again (the next
	// command reads anyway).
	synced bool
	// updates writes untagged responses; kept from the last Poll so that
	// FETCH and STORE can announce a new keyword (FLAGS) before the first
	// FETCH response that carries it. It writes to the connection, which
	// does not change.
	updates *imapserver.UpdateWriter
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionAppendLimit    = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

// view is the session's picture of the selected mailbox.
type view struct {
	name     string
	mbox     mailstore.Mailbox // as of the last sync
	readOnly bool
	uids     []uint32                     // seq n is uids[n-1]
	state    map[uint32]mailstore.Message // latest known, by UID
	reported map[uint32]uint64            // MODSEQ whose flags the client has seen
	dirty    map[uint32]bool              // UIDs whose flags may differ from what was reported
	gone     map[uint32]bool              // expunged elsewhere, not yet reported
	fresh    []uint32                     // new UIDs, not yet reported
	saved    imap.UIDSet                  // SEARCHRES

	// \Recent (IMAP4rev1 only, rev1; see recent.go): the UIDs this
	// session claimed, or, read-only, every UID from peek on (0: none).
	rev1   bool
	recent []mailstore.UIDRange
	peek   uint32
	told   uint32 // the RECENT count last sent

	keywords map[string]bool // those the client was told of in FLAGS

	// seq is state in sequence order (seq n is seq[n-1]), built when a
	// search needs it and dropped by every change to uids or state (set,
	// drop, and reporting fresh UIDs): searches walk an array instead of
	// looking every message up in the map.
	seq   []mailstore.Message
	seqOK bool
}

// set records msg's latest state.
func (v *view) set(msg mailstore.Message) {
	v.state[msg.UID] = msg
	v.seqOK = false
}

// seqMessages returns the view's messages in sequence order; the slice
// must not be modified.
func (v *view) seqMessages() []mailstore.Message {
	if !v.seqOK {
		v.seq = v.seq[:0]
		for _, uid := range v.uids {
			v.seq = append(v.seq, v.state[uid])
		}
		v.seqOK = true
	}
	return v.seq
}

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.s.cfg.CommandTimeout)
}

// imapErr turns a store error into the IMAP response a client expects.
func imapErr(err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, mailstore.ErrNoMailbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	case errors.Is(err, mailstore.ErrMailboxExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, mailstore.ErrBadName), errors.Is(err, client.ErrInvalidArgument):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: err.Error()}
	case errors.Is(err, mailstore.ErrTooLarge):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: err.Error()}
	default:
		// The cluster is unreachable or busy: NO [UNAVAILABLE]; the client
		// retries, nothing was half done.
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Storage unavailable, try again"}
	}
}

func (s *session) Close() error {
	s.s.metrics.sessions.Dec()
	return nil
}

// Login checks the password; plaintext passwords are refused on a
// connection that is neither TLS nor loopback unless allowed.
func (s *session) Login(username, password string) error {
	if !s.s.cfg.AllowPlaintext && !secure(s.conn.NetConn()) {
		s.s.metrics.logins.WithLabelValues("refused").Inc()
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodePrivacyRequired, Text: "Use TLS (STARTTLS) to log in"}
	}
	if !s.s.users.Check(username, password) {
		s.s.metrics.logins.WithLabelValues("failed").Inc()
		return imapserver.ErrAuthFailed
	}
	s.s.metrics.logins.WithLabelValues("ok").Inc()
	s.user = username
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.s.store.Sweep(ctx, username); err != nil {
		s.s.log.Warn("sweep of deleted mailboxes failed", "user", username, "err", err)
	}
	return nil
}

func secure(c net.Conn) bool {
	if _, ok := c.(*tls.Conn); ok {
		return true
	}
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

func (s *session) Unauthenticate() error {
	s.user, s.sel = "", nil
	return nil
}

func (s *session) AppendLimit() uint32 { return uint32(min(s.s.store.MaxMessageSize(), 1<<32-1)) }

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: mailstore.Delim}}}, nil
}

var permanentFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagWildcard}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	s.sel = nil
	rev1 := s.rev1() // fixed from here on: ENABLE is not valid once selected
	m, claimed, err := s.selectMailbox(ctx, name, options.ReadOnly, rev1)
	if err != nil {
		return nil, imapErr(err)
	}
	msgs, err := s.s.store.Messages(ctx, s.user, m)
	if err != nil {
		return nil, imapErr(err)
	}
	v := &view{name: m.Name, mbox: m, readOnly: options.ReadOnly, rev1: rev1, state: map[uint32]mailstore.Message{}, reported: map[uint32]uint64{}, dirty: map[uint32]bool{}, gone: map[uint32]bool{}}
	v.claimed(claimed)
	if options.ReadOnly && rev1 {
		v.peek = m.FirstRecent
	}
	var firstUnseen uint32
	v.keywords = map[string]bool{}
	for i, msg := range msgs {
		v.uids = append(v.uids, msg.UID)
		v.state[msg.UID] = msg
		v.reported[msg.UID] = msg.ModSeq
		if firstUnseen == 0 && !msg.Has(`\Seen`) {
			firstUnseen = uint32(i + 1)
		}
		v.newKeywords(msg)
	}
	s.sel = v
	data := &imap.SelectData{
		Flags: v.mailboxFlags(), NumMessages: uint32(len(v.uids)), NumRecent: v.numRecent(), FirstUnseenSeqNum: firstUnseen,
		UIDNext: imap.UID(m.UIDNext), UIDValidity: m.UIDValidity, HighestModSeq: m.HighestModSeq,
	}
	if !options.ReadOnly {
		data.PermanentFlags = permanentFlags
	}
	v.told = data.NumRecent
	return data, nil
}

func (s *session) Unselect() error {
	s.sel = nil
	return nil
}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	ctx, cancel := s.ctx()
	defer cancel()
	name = strings.TrimRight(name, "/")
	// Superiors are created as needed (RFC 3501 6.3.3): CREATE a/b makes a.
	for i, r := range name {
		if r == mailstore.Delim && i > 0 {
			if err := s.s.store.CreateMailbox(ctx, s.user, name[:i]); err != nil && !errors.Is(err, mailstore.ErrMailboxExists) {
				return imapErr(err)
			}
		}
	}
	return imapErr(s.s.store.CreateMailbox(ctx, s.user, name))
}

func (s *session) Delete(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return imapErr(s.s.store.DeleteMailbox(ctx, s.user, name))
}

func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return imapErr(s.s.store.RenameMailbox(ctx, s.user, oldName, strings.TrimRight(newName, "/")))
}

func (s *session) Subscribe(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return imapErr(s.s.store.Subscribe(ctx, s.user, name, true))
}

func (s *session) Unsubscribe(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return imapErr(s.s.store.Subscribe(ctx, s.user, name, false))
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailstore.Delim})
	}
	ctx, cancel := s.ctx()
	defer cancel()
	all, err := s.s.store.Mailboxes(ctx, s.user)
	if err != nil {
		return imapErr(err)
	}
	// A mailbox whose superior does not exist (deleted, or made by another
	// server) still shows its superior, as \Noselect, so clients can
	// build the tree (RFC 3501 6.3.8).
	exists := map[string]bool{}
	for _, m := range all {
		exists[m.Name] = true
	}
	var missing []mailstore.Mailbox
	for _, m := range all {
		for i, r := range m.Name {
			if r == mailstore.Delim && !exists[m.Name[:i]] {
				exists[m.Name[:i]] = true
				missing = append(missing, mailstore.Mailbox{Name: m.Name[:i]})
			}
		}
	}
	noselect := map[string]bool{}
	for _, m := range missing {
		noselect[m.Name] = true
	}
	all = append(all, missing...)
	// Subscriptions outlive their mailboxes: LIST (SUBSCRIBED) and LSUB
	// show one whose mailbox is gone as \NonExistent (RFC 5258).
	var subs map[string]bool
	nonexistent := map[string]bool{}
	if options.SelectSubscribed || options.ReturnSubscribed {
		if subs, err = s.s.store.Subscriptions(ctx, s.user); err != nil {
			return imapErr(err)
		}
		for _, m := range all {
			if m.Subscribed {
				subs[m.Name] = true
			}
		}
		if options.SelectSubscribed {
			for name := range subs {
				if !exists[name] {
					nonexistent[name] = true
					all = append(all, mailstore.Mailbox{Name: name})
				}
			}
		}
	}
	slices.SortStableFunc(all[1:], func(a, b mailstore.Mailbox) int { return strings.Compare(a.Name, b.Name) }) // INBOX stays first
	matches := func(name string) bool {
		return slices.ContainsFunc(patterns, func(p string) bool { return imapserver.MatchList(name, mailstore.Delim, ref, p) })
	}
	// subscribedBelow: a subscribed mailbox below name that the patterns
	// do not reach (a "%" stops above it).
	subscribedBelow := func(name string) bool {
		return slices.ContainsFunc(all, func(o mailstore.Mailbox) bool {
			return subs[o.Name] && strings.HasPrefix(o.Name, name+"/") && !matches(o.Name)
		})
	}
	for _, m := range all {
		if !matches(m.Name) {
			continue
		}
		var childInfo *imap.ListDataChildInfo
		if options.SelectSubscribed && !subs[m.Name] {
			if !subscribedBelow(m.Name) {
				continue
			}
			if !options.SelectRecursiveMatch {
				// LSUB with "%" (RFC 3501 6.3.9): the level the pattern
				// reaches, flagged \Noselect since it is not subscribed.
				if err := w.WriteList(&imap.ListData{Mailbox: m.Name, Delim: mailstore.Delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}}); err != nil {
					return err
				}
				continue
			}
			childInfo = &imap.ListDataChildInfo{Subscribed: true} // RFC 5258 RECURSIVEMATCH
		}
		use := specialUse(m.Name)
		if options.SelectSpecialUse && (use == "" || noselect[m.Name]) {
			continue
		}
		data := &imap.ListData{Mailbox: m.Name, Delim: mailstore.Delim, ChildInfo: childInfo}
		if nonexistent[m.Name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		} else if noselect[m.Name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
		} else if use != "" {
			data.Attrs = append(data.Attrs, use)
		}
		if subs[m.Name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		children := slices.ContainsFunc(all, func(o mailstore.Mailbox) bool { return !nonexistent[o.Name] && strings.HasPrefix(o.Name, m.Name+"/") })
		if children {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if options.ReturnStatus != nil && !noselect[m.Name] && !nonexistent[m.Name] {
			data.Status = statusData(m, options.ReturnStatus)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// specialUse is the SPECIAL-USE attribute (RFC 6154) of the mailboxes
// that mail clients look for by role, named as Dovecot's default
// configuration names them, so that clients file sent mail, drafts and
// deletions where the user expects.
func specialUse(name string) imap.MailboxAttr {
	switch name {
	case "Drafts":
		return imap.MailboxAttrDrafts
	case "Sent", "Sent Messages", "Sent Items":
		return imap.MailboxAttrSent
	case "Trash", "Deleted Messages", "Deleted Items":
		return imap.MailboxAttrTrash
	case "Junk", "Spam":
		return imap.MailboxAttrJunk
	case "Archive":
		return imap.MailboxAttrArchive
	}
	return ""
}

func statusData(m mailstore.Mailbox, o *imap.StatusOptions) *imap.StatusData {
	d := &imap.StatusData{Mailbox: m.Name}
	if o.NumMessages {
		d.NumMessages = &m.Messages
	}
	if o.UIDNext {
		d.UIDNext = imap.UID(m.UIDNext)
	}
	if o.UIDValidity {
		d.UIDValidity = m.UIDValidity
	}
	if o.NumUnseen {
		d.NumUnseen = &m.Unseen
	}
	if o.NumDeleted {
		d.NumDeleted = &m.Deleted
	}
	if o.Size {
		d.Size = &m.Size
	}
	if o.HighestModSeq {
		d.HighestModSeq = m.HighestModSeq
	}
	return d
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	m, err := s.s.store.Mailbox(ctx, s.user, name)
	if err != nil {
		return nil, imapErr(err)
	}
	d := statusData(m, options)
	if options.NumRecent {
		n, err := s.s.store.RecentCount(ctx, s.user, m)
		if err != nil {
			return nil, imapErr(err)
		}
		d.NumRecent = &n
	}
	return d, nil
}

func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	body, err := io.ReadAll(io.LimitReader(r, s.s.store.MaxMessageSize()+1))
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	var flags []string
	for _, f := range options.Flags {
		flags = append(flags, string(f))
	}
	// Appending to the mailbox this session has selected read-write: the
	// new message is \Recent here, claimed in the append's own commit.
	v := s.sel
	claim := v != nil && !v.readOnly && v.rev1 && v.name == mailstore.CanonicalMailbox(name)
	a, err := s.s.store.AppendMessage(ctx, s.user, name, mailstore.NewMessage{Body: body, Flags: flags, Date: options.Time, ClaimRecent: claim})
	if claim && err == nil {
		v.claimed(a.Recent)
	}
	if err != nil {
		s.s.metrics.appends.WithLabelValues("error").Inc()
	} else {
		s.s.metrics.appends.WithLabelValues("ok").Inc()
	}
	if errors.Is(err, mailstore.ErrNoMailbox) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	if err != nil {
		return nil, imapErr(err)
	}
	return &imap.AppendData{UID: imap.UID(a.UID), UIDValidity: a.UIDValidity}, nil
}

// sync reads the selected mailbox's index if it changed, and notes what
// the client has not been told yet (new, expunged, changed flags).
func (s *session) sync(ctx context.Context) error {
	err := s.syncOnce(ctx)
	s.synced = err == nil
	return err
}

// unsyncOnError: go-imap polls only after a command that succeeded, so a
// failed one must not leave the next poll believing it is current.
func (s *session) unsyncOnError(err *error) {
	if *err != nil {
		s.synced = false
	}
}

func (s *session) syncOnce(ctx context.Context) error {
	v := s.sel
	m, err := s.s.store.Mailbox(ctx, s.user, v.name)
	if errors.Is(err, mailstore.ErrNoMailbox) || (err == nil && m.ID != v.mbox.ID) {
		// Deleted (or renamed away) through another session: every
		// message is gone.
		for _, uid := range v.uids {
			v.gone[uid] = true
		}
		v.fresh = nil
		return nil
	}
	if err != nil {
		return err
	}
	if m.Version == v.mbox.Version {
		return nil
	}
	if done, err := s.syncChanged(ctx, m); done || err != nil {
		if done {
			s.s.metrics.syncs.WithLabelValues("changes").Inc()
		}
		return err
	}
	s.s.metrics.syncs.WithLabelValues("full").Inc()
	msgs, err := s.s.store.Messages(ctx, s.user, m)
	if err != nil {
		return err
	}
	v.mbox = m
	now := make(map[uint32]mailstore.Message, len(msgs))
	for _, msg := range msgs {
		now[msg.UID] = msg
	}
	last := v.lastUID()
	for _, uid := range v.uids {
		if _, ok := now[uid]; !ok {
			v.gone[uid] = true
		}
	}
	kept := v.fresh[:0]
	for _, uid := range v.fresh {
		if _, ok := now[uid]; ok {
			kept = append(kept, uid)
		}
	}
	v.fresh = kept
	v.take(msgs, last)
	return nil
}

// lastUID is the highest UID the view knows of, reported or not.
func (v *view) lastUID() uint32 {
	last := uint32(0)
	if len(v.uids) > 0 {
		last = v.uids[len(v.uids)-1]
	}
	if len(v.fresh) > 0 {
		last = max(last, v.fresh[len(v.fresh)-1])
	}
	return last
}

// take records index entries read from the mailbox (in UID order): those
// above last are new, the others' flag changes are to be reported.
func (v *view) take(msgs []mailstore.Message, last uint32) {
	for _, msg := range msgs {
		if msg.UID > last {
			v.fresh = append(v.fresh, msg.UID)
			v.reported[msg.UID] = msg.ModSeq
		}
		if v.reported[msg.UID] != msg.ModSeq {
			v.dirty[msg.UID] = true
		}
		v.set(msg)
	}
}

// syncChanged catches the view up with mailbox m by reading only the
// index entries written since the view's version: new messages and flag
// changes, the common case (a delivery, a flag set elsewhere), without
// reading a mailbox of thousands again. Expunged entries leave no trace in
// that read; they show in the count: the messages the view holds plus the
// new ones must be m.Messages, or something was expunged (or m is older
// than the entries read), and done is false: the caller reads everything.
func (s *session) syncChanged(ctx context.Context, m mailstore.Mailbox) (done bool, err error) {
	v := s.sel
	msgs, err := s.s.store.Changed(ctx, s.user, m, v.mbox.Version)
	if err != nil {
		return false, err
	}
	last := v.lastUID()
	added := 0
	for _, msg := range msgs {
		if msg.UID > last {
			added++
		} else if _, ok := v.state[msg.UID]; !ok || v.gone[msg.UID] {
			return false, nil // not in the picture: read it whole
		}
	}
	if len(v.uids)-len(v.gone)+len(v.fresh)+added != int(m.Messages) {
		return false, nil
	}
	v.mbox = m
	v.take(msgs, last)
	return true, nil
}

// applied notes a change this session made itself: when the view was
// current before it, it is current after it (the session has taken the
// change's results in), and the next sync need not read the index again.
func (v *view) applied(ch mailstore.Change) {
	if ch.From == v.mbox.Version && ch.To != ch.From {
		v.mbox = ch.After
	}
}

// known is the view's picture of the mailbox for a change to try first:
// the record and messages as of the last sync (or own change).
func (v *view) known() *mailstore.Known {
	if len(v.gone) > 0 || len(v.fresh) > 0 {
		return nil // the picture is being reconciled: let the change read
	}
	return &mailstore.Known{Mailbox: v.mbox, Messages: v.state}
}

// drop removes uid from the view; the caller writes EXPUNGE seq.
func (v *view) drop(uid uint32) (seq uint32) {
	i := slices.Index(v.uids, uid)
	if i < 0 {
		return 0
	}
	v.uids = slices.Delete(v.uids, i, i+1)
	delete(v.state, uid)
	v.seqOK = false
	delete(v.reported, uid)
	delete(v.gone, uid)
	return uint32(i + 1)
}

func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.updates = w
	if s.sel == nil {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if !s.synced {
		if err := s.sync(ctx); err != nil {
			return nil // nothing to report now; the next command tries again
		}
	}
	s.synced = false
	s.claimNew(ctx)
	return s.report(w, allowExpunge)
}

func (s *session) report(w *imapserver.UpdateWriter, allowExpunge bool) error {
	v := s.sel
	if allowExpunge && len(v.gone) > 0 {
		// Highest sequence numbers first: each EXPUNGE shifts the ones
		// after it, never the ones before.
		for i := len(v.uids) - 1; i >= 0; i-- {
			if uid := v.uids[i]; v.gone[uid] {
				if err := w.WriteExpunge(v.drop(uid)); err != nil {
					return err
				}
			}
		}
	}
	if len(v.fresh) > 0 {
		v.uids = append(v.uids, v.fresh...)
		v.fresh = nil
		v.seqOK = false
		if err := w.WriteNumMessages(uint32(len(v.uids))); err != nil {
			return err
		}
		if err := s.tellRecent(w, true); err != nil {
			return err
		}
	} else if err := s.tellRecent(w, false); err != nil { // after expunges
		return err
	}
	// Only the UIDs whose flags may have changed: walking the whole
	// mailbox after every command cost more than the command itself in a
	// mailbox of thousands. v.uids is in UID order: a UID's sequence
	// number is found by binary search.
	if len(v.dirty) == 0 {
		return nil
	}
	dirty := slices.Sorted(maps.Keys(v.dirty))
	clear(v.dirty)
	for _, uid := range dirty {
		msg, ok := v.state[uid]
		if !ok || v.gone[uid] || v.reported[uid] == msg.ModSeq {
			continue
		}
		i, found := slices.BinarySearch(v.uids, uid)
		if !found {
			continue
		}
		v.reported[uid] = msg.ModSeq
		if v.newKeywords(msg) {
			if err := w.WriteMailboxFlags(v.mailboxFlags()); err != nil {
				return err
			}
		}
		if err := w.WriteMessageFlags(uint32(i+1), imap.UID(uid), v.flags(msg)); err != nil {
			return err
		}
	}
	return nil
}

// Idle reports changes made through any front end: it reads the
// mailbox's record (one linearizable read, from the record cache when it
// can) when the record cache hears of a change, and every IdleInterval.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	t := time.NewTicker(s.s.cfg.IdleInterval)
	defer t.Stop()
	for {
		// Woken at once by a change to the mailbox made through any front
		// end (the record cache hears of it from the leader), and by the
		// ticker in any case. Watching starts before the poll, so a change
		// made just after it is not missed.
		var changed <-chan struct{}
		unwatch := func() {}
		if s.sel != nil {
			changed, unwatch = s.s.store.MailboxChanged(s.user, s.sel.name)
		}
		if err := s.Poll(w, true); err != nil {
			unwatch()
			return err
		}
		select {
		case <-stop:
			unwatch()
			return nil
		case <-s.s.done:
			unwatch()
			return nil
		case <-t.C:
		case <-changed:
		}
		unwatch()
	}
}

// resolve turns a sequence or UID set into the view's (seq, uid) pairs,
// in sequence order, skipping messages expunged elsewhere.
func (v *view) resolve(numSet imap.NumSet) (seqs, uids []uint32) {
	if imap.IsSearchRes(numSet) {
		numSet = v.saved
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		n := uint32(len(v.uids))
		for _, r := range set {
			start, stop := r.Start, r.Stop
			staticRange(&start, &stop, n)
			for q := start; q <= stop && q <= n; q++ {
				if q == 0 {
					continue
				}
				if uid := v.uids[q-1]; !v.gone[uid] {
					seqs, uids = append(seqs, q), append(uids, uid)
				}
			}
		}
	case imap.UIDSet:
		var maxUID uint32
		if len(v.uids) > 0 {
			maxUID = v.uids[len(v.uids)-1]
		}
		for _, r := range set {
			start, stop := uint32(r.Start), uint32(r.Stop)
			staticRange(&start, &stop, maxUID)
			lo, _ := slices.BinarySearch(v.uids, start)
			for i := lo; i < len(v.uids) && v.uids[i] <= stop; i++ {
				if uid := v.uids[i]; !v.gone[uid] {
					seqs, uids = append(seqs, uint32(i+1)), append(uids, uid)
				}
			}
		}
	}
	// Overlapping ranges: each message once, in sequence order.
	type pair struct{ seq, uid uint32 }
	ps := make([]pair, len(seqs))
	for i := range seqs {
		ps[i] = pair{seqs[i], uids[i]}
	}
	slices.SortFunc(ps, func(a, b pair) int { return int(a.seq) - int(b.seq) })
	ps = slices.CompactFunc(ps, func(a, b pair) bool { return a.seq == b.seq })
	seqs, uids = seqs[:0], uids[:0]
	for _, p := range ps {
		seqs, uids = append(seqs, p.seq), append(uids, p.uid)
	}
	return seqs, uids
}

// staticRange resolves '*' (0) to max.
func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	defer s.unsyncOnError(&err)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.sync(ctx); err != nil {
		return imapErr(err)
	}
	v := s.sel
	seqs, uids := v.resolve(numSet)
	markSeen := !v.readOnly && slices.ContainsFunc(options.BodySection, func(b *imap.FetchItemBodySection) bool { return !b.Peek })
	if markSeen {
		var unseen []uint32
		for _, uid := range uids {
			if !v.state[uid].Has(`\Seen`) {
				unseen = append(unseen, uid)
			}
		}
		if len(unseen) > 0 {
			slices.Sort(unseen)
			msgs, ch, err := s.s.store.StoreFlags(ctx, s.user, v.name, mailstore.UIDs(unseen...), mailstore.FlagsAdd, []string{`\Seen`}, v.known())
			if err != nil {
				return imapErr(err)
			}
			v.applied(ch)
			for _, m := range msgs {
				v.set(m)
				v.dirty[m.UID] = true
			}
			options.Flags = true // a changed flag is reported with the fetch
		}
	}
	msgs := make([]mailstore.Message, len(uids))
	for i, uid := range uids {
		msgs[i] = v.state[uid]
	}
	if options.Flags {
		if err := s.tellKeywords(msgs); err != nil {
			return err
		}
	}
	var pf *prefetcher
	if len(uids) > 1 && needsBody(options) {
		pf = s.prefetch(ctx, msgs)
		defer pf.stop()
	}
	for i, uid := range uids {
		msg := msgs[i]
		var pre func() ([]byte, error)
		if pf != nil {
			pre = func() ([]byte, error) { return pf.body(ctx, s, i) }
		}
		if err := s.fetchOne(ctx, w.CreateMessage(seqs[i]), msg, options, pre); err != nil {
			return err
		}
		if options.Flags {
			v.reported[uid] = msg.ModSeq
		}
	}
	return nil
}

// needsBody reports whether a FETCH reads whole messages (not just the
// index, the header cache or a byte range).
func needsBody(o *imap.FetchOptions) bool {
	if o.BodyStructure != nil || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 {
		return true
	}
	for _, bs := range o.BodySection {
		top := len(bs.Part) == 0
		if !(top && bs.Specifier == imap.PartSpecifierHeader) && !(top && bs.Specifier == imap.PartSpecifierNone && bs.Partial != nil && len(bs.HeaderFields) == 0) {
			return true
		}
	}
	return false
}

// fetchOne writes one message's FETCH response. pre, if set, returns its
// body (read ahead).
func (s *session) fetchOne(ctx context.Context, w *imapserver.FetchResponseWriter, msg mailstore.Message, o *imap.FetchOptions, pre func() ([]byte, error)) error {
	w.WriteUID(imap.UID(msg.UID))
	if o.Flags {
		w.WriteFlags(s.sel.flags(msg))
	}
	if o.InternalDate {
		w.WriteInternalDate(msg.Date)
	}
	if o.RFC822Size {
		w.WriteRFC822Size(msg.Size)
	}
	var header, body []byte
	getHeader := func() ([]byte, error) {
		if header == nil {
			h, err := s.s.store.Header(ctx, s.user, s.sel.mbox, msg)
			if err != nil {
				return nil, err
			}
			header = h
		}
		return header, nil
	}
	getBody := func() ([]byte, error) {
		if body == nil {
			read := pre
			if read == nil {
				read = func() ([]byte, error) { return s.s.store.Body(ctx, msg) }
			}
			b, err := read()
			if err != nil {
				return nil, err
			}
			body = b
		}
		return body, nil
	}
	if o.Envelope {
		h, err := getHeader()
		if err != nil {
			return imapErr(err)
		}
		w.WriteEnvelope(envelope(h))
	}
	if o.BodyStructure != nil {
		b, err := getBody()
		if err != nil {
			return imapErr(err)
		}
		w.WriteBodyStructure(withDefaultCharset(imapserver.ExtractBodyStructure(bytes.NewReader(parseable(b, msg.HeaderLen)))))
	}
	for _, bs := range o.BodySection {
		var out []byte
		switch {
		case len(bs.Part) == 0 && bs.Partial != nil &&
			(bs.Specifier == imap.PartSpecifierNone || (bs.Specifier == imap.PartSpecifierText && body == nil && pre == nil)):
			// BODY[]<off.len>, and BODY[TEXT]<off.len> (a client's preview)
			// when the message is not in hand: a range read of the blob
			// (TEXT's after the header block), not the whole message.
			off := bs.Partial.Offset
			if bs.Specifier == imap.PartSpecifierText {
				off = min(msg.HeaderLen+off, msg.Size)
			}
			b, err := s.s.store.Range(ctx, msg, off, bs.Partial.Size)
			if err != nil {
				return imapErr(err)
			}
			out = b
		case len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0:
			// BODY[]: the stored bytes exactly, never re-parsed.
			b, err := getBody()
			if err != nil {
				return imapErr(err)
			}
			out = b
		case len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierHeader:
			h, err := getHeader()
			if err != nil {
				return imapErr(err)
			}
			out, _ = topSection(bs, h, nil)
		case len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierText:
			b, err := getBody()
			if err != nil {
				return imapErr(err)
			}
			hlen := min(msg.HeaderLen, int64(len(b)))
			out, _ = topSection(bs, b[:hlen], b[hlen:])
		default:
			b, err := getBody()
			if err != nil {
				return imapErr(err)
			}
			out = imapserver.ExtractBodySection(bytes.NewReader(parseable(b, msg.HeaderLen)), bs)
		}
		if err := writeLiteral(w.WriteBodySection(bs, int64(len(out))), out); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		b, err := getBody()
		if err != nil {
			return imapErr(err)
		}
		out := imapserver.ExtractBinarySection(bytes.NewReader(parseable(b, msg.HeaderLen)), bs)
		if err := writeLiteral(w.WriteBinarySection(bs, int64(len(out))), out); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySectionSize {
		b, err := getBody()
		if err != nil {
			return imapErr(err)
		}
		w.WriteBinarySectionSize(bs, imapserver.ExtractBinarySectionSize(bytes.NewReader(parseable(b, msg.HeaderLen)), bs))
	}
	return w.Close()
}

// writeLiteral writes b as a FETCH item's literal.
func writeLiteral(wc io.WriteCloser, b []byte) error {
	if _, err := wc.Write(b); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) (err error) {
	defer s.unsyncOnError(&err)
	v := s.sel
	if v.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only (EXAMINE)"}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// A change is tried against the session's picture without reading the
	// mailbox first: the transaction compares the mailbox's version, so a
	// commit proves the picture was current (and a stale one fails the
	// compare and is read afresh). Only a change that wrote nothing proved
	// nothing, and is confirmed below.
	known := v.known()
	if known == nil {
		if err := s.sync(ctx); err != nil {
			return imapErr(err)
		}
		known = v.known()
	}
	s.synced = false
	seqs, uids := v.resolve(numSet)
	if len(uids) == 0 {
		return nil
	}
	var fs []string
	for _, f := range flags.Flags {
		fs = append(fs, string(f))
	}
	op := map[imap.StoreFlagsOp]mailstore.FlagOp{imap.StoreFlagsAdd: mailstore.FlagsAdd, imap.StoreFlagsDel: mailstore.FlagsRemove, imap.StoreFlagsSet: mailstore.FlagsSet}[flags.Op]
	before := v.mbox.Version
	msgs, ch, err := s.s.store.StoreFlags(ctx, s.user, v.name, mailstore.UIDs(uids...), op, fs, known)
	if err == nil && known != nil && ch.To == ch.From {
		// Nothing written, decided on a picture nobody checked: read the
		// mailbox, and decide again if it moved on.
		if err := s.sync(ctx); err != nil {
			return imapErr(err)
		}
		if v.mbox.Version != ch.From {
			before = v.mbox.Version
			msgs, ch, err = s.s.store.StoreFlags(ctx, s.user, v.name, mailstore.UIDs(uids...), op, fs, v.known())
		}
	}
	if err != nil {
		return imapErr(err)
	}
	v.applied(ch)
	// Current as of this change when it committed on the picture (or the
	// picture was just confirmed); otherwise the next poll reads.
	s.synced = ch.From == before && (ch.To != ch.From || known != nil)
	for _, m := range msgs {
		v.set(m)
		v.reported[m.UID] = m.ModSeq
	}
	if err := s.tellKeywords(msgs); err != nil {
		return err
	}
	if flags.Silent {
		return nil
	}
	for i, uid := range uids {
		m, ok := v.state[uid]
		if !ok {
			continue
		}
		rw := w.CreateMessage(seqs[i])
		rw.WriteUID(imap.UID(uid))
		rw.WriteFlags(v.flags(m))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Expunge(w *imapserver.ExpungeWriter, uidSet *imap.UIDSet) (err error) {
	defer s.unsyncOnError(&err)
	v := s.sel
	if v.readOnly {
		// Nothing is removed from a mailbox opened with EXAMINE, and no
		// error is given: CLOSE comes here too, and RFC 3501 has it
		// succeed (Dovecot answers EXPUNGE the same way).
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.sync(ctx); err != nil {
		return imapErr(err)
	}
	// Only messages this session knows of: one delivered meanwhile and not
	// yet announced must not vanish unseen.
	known := slices.Clone(v.uids)
	if uidSet != nil {
		_, in := v.resolve(*uidSet)
		known = in
	}
	gone, err := s.s.store.Expunge(ctx, s.user, v.name, mailstore.UIDs(known...))
	if err != nil {
		return imapErr(err)
	}
	for _, uid := range gone {
		v.gone[uid] = true
	}
	for i := len(v.uids) - 1; i >= 0; i-- {
		if uid := v.uids[i]; v.gone[uid] {
			if err := w.WriteExpunge(v.drop(uid)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *session) Copy(numSet imap.NumSet, dest string) (_ *imap.CopyData, err error) {
	defer s.unsyncOnError(&err)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.sync(ctx); err != nil {
		return nil, imapErr(err)
	}
	_, uids := s.sel.resolve(numSet)
	slices.Sort(uids)
	src, dst, uv, err := s.s.store.Copy(ctx, s.user, s.sel.name, dest, mailstore.UIDs(uids...), false)
	if err != nil {
		return nil, copyErr(err)
	}
	if mailstore.CanonicalMailbox(dest) == s.sel.name {
		s.synced = false // the copies are new mail here: the poll reads
	}
	return &imap.CopyData{UIDValidity: uv, SourceUIDs: uidSet(src), DestUIDs: uidSet(dst)}, nil
}

func copyErr(err error) error {
	if errors.Is(err, mailstore.ErrNoMailbox) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return imapErr(err)
}

func uidSet(uids []uint32) imap.UIDSet {
	var s imap.UIDSet
	for _, u := range uids {
		s.AddNum(imap.UID(u))
	}
	return s
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	defer s.unsyncOnError(&err)
	v := s.sel
	if v.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only (EXAMINE)"}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.sync(ctx); err != nil {
		return imapErr(err)
	}
	_, uids := v.resolve(numSet)
	slices.Sort(uids)
	src, dst, uv, err := s.s.store.Copy(ctx, s.user, v.name, dest, mailstore.UIDs(uids...), true)
	if err != nil {
		return copyErr(err)
	}
	if mailstore.CanonicalMailbox(dest) == v.name {
		s.synced = false // moved under new UIDs here: the poll reads
	}
	if err := w.WriteCopyData(&imap.CopyData{UIDValidity: uv, SourceUIDs: uidSet(src), DestUIDs: uidSet(dst)}); err != nil {
		return err
	}
	for _, uid := range src {
		v.gone[uid] = true
	}
	for i := len(v.uids) - 1; i >= 0; i-- {
		if uid := v.uids[i]; v.gone[uid] && slices.Contains(src, uid) {
			if err := w.WriteExpunge(v.drop(uid)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (_ *imap.SearchData, err error) {
	defer s.unsyncOnError(&err)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.sync(ctx); err != nil {
		return nil, imapErr(err)
	}
	v := s.sel
	msgs := v.seqMessages()
	anyGone := len(v.gone) > 0
	live := msgs
	if anyGone {
		live = make([]mailstore.Message, 0, len(msgs))
		for _, msg := range msgs {
			if !v.gone[msg.UID] {
				live = append(live, msg)
			}
		}
	}
	var data imap.SearchData
	var seqSet imap.SeqSet
	var uidSet imap.UIDSet
	var headers map[uint32][]byte
	if needsHeaders(criteria) {
		// One ranged read of the header cache instead of one per message.
		h, err := s.s.store.Headers(ctx, s.user, v.mbox, live)
		if err != nil {
			return nil, imapErr(err)
		}
		headers = h
	}
	var pf *prefetcher
	if needsBodies(criteria) {
		pf = s.prefetch(ctx, live)
		defer pf.stop()
	}
	k := -1 // index into the live messages
	resolved := map[any]map[uint32]bool{}
	m := &matcher{s: s, ctx: ctx, resolved: resolved}
	for i := range msgs {
		uid := msgs[i].UID
		if anyGone && v.gone[uid] {
			continue
		}
		k++
		seq := uint32(i + 1)
		*m = matcher{s: s, ctx: ctx, msg: msgs[i], seq: seq, resolved: resolved}
		if headers != nil {
			m.cached = headers[uid]
		}
		if pf != nil {
			j := k
			m.pre = func() ([]byte, error) { return pf.body(ctx, s, j) }
		}
		ok, err := m.match(criteria)
		if err != nil {
			return nil, imapErr(err)
		}
		if pf != nil && m.body == nil {
			pf.skip(ctx, k) // decided without the body
		}
		if !ok {
			continue
		}
		uidSet.AddNum(imap.UID(uid))
		num := seq
		if kind == imapserver.NumKindUID {
			num = uid
		} else {
			seqSet.AddNum(seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	} else {
		data.All = seqSet
	}
	if options.ReturnSave {
		v.saved = uidSet
	}
	return &data, nil
}

// matcher evaluates search criteria on one message, reading its header
// (from the index) or body (from the blob) only when a criterion needs it.
type matcher struct {
	s      *session
	ctx    context.Context
	msg    mailstore.Message
	seq    uint32
	header *mail.Header
	body   []byte
	cached []byte                 // the header block, if read ahead
	pre    func() ([]byte, error) // the body, if read ahead
	// resolved holds the search's sequence and UID sets, resolved once
	// (keyed by the set's address in the criteria) instead of once per
	// message.
	resolved map[any]map[uint32]bool
}

// in reports whether num is in the set at key, resolving it on first use.
func (m *matcher) in(key any, set imap.NumSet, num uint32, seqs bool) bool {
	r, ok := m.resolved[key]
	if !ok {
		ss, us := m.s.sel.resolve(set)
		if !seqs {
			ss = us
		}
		r = make(map[uint32]bool, len(ss))
		for _, n := range ss {
			r[n] = true
		}
		m.resolved[key] = r
	}
	return r[num]
}

// anyCriterion reports whether has holds for c or any criteria nested in
// it (NOT, OR).
func anyCriterion(c *imap.SearchCriteria, has func(*imap.SearchCriteria) bool) bool {
	if has(c) {
		return true
	}
	for i := range c.Not {
		if anyCriterion(&c.Not[i], has) {
			return true
		}
	}
	for i := range c.Or {
		if anyCriterion(&c.Or[i][0], has) || anyCriterion(&c.Or[i][1], has) {
			return true
		}
	}
	return false
}

func needsBodies(c *imap.SearchCriteria) bool {
	return anyCriterion(c, func(c *imap.SearchCriteria) bool { return len(c.Body) > 0 || len(c.Text) > 0 })
}

func needsHeaders(c *imap.SearchCriteria) bool {
	return anyCriterion(c, func(c *imap.SearchCriteria) bool {
		return len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero()
	})
}

// rawHdr returns the message's header block as stored.
func (m *matcher) rawHdr() ([]byte, error) {
	if m.cached == nil {
		h, err := m.s.s.store.Header(m.ctx, m.s.user, m.s.sel.mbox, m.msg)
		if err != nil {
			return nil, err
		}
		m.cached = h
	}
	return m.cached, nil
}

func (m *matcher) hdr() (*mail.Header, error) {
	if m.header == nil {
		h, err := m.rawHdr()
		if err != nil {
			return nil, err
		}
		m.header = &mail.Header{Header: gomessage.Header{Header: parseHeader(h)}}
	}
	return m.header, nil
}

// cannotMatch reports, without parsing the header block h, that no field
// of it can contain pattern: some word of the pattern is not in the block
// at all. Parsing only decodes encoded words (=?charset?...?=; a block
// with any is left to the parser) and unfolds continuation lines, joining
// them with a space; so a field that contains the pattern contains each
// of its words within one line of the block. Most messages fail a header
// search this way, and parsing every header block was most of a search's
// time. An address field (address) is also matched as read
// (matchAddresses), which drops comments and quotes and writes
// "Name <mailbox@host>": its pattern is cut into words at those
// characters too.
func cannotMatch(h []byte, pattern string, address bool) bool {
	words := strings.FieldsFunc(strings.ToLower(pattern), func(r rune) bool {
		return unicode.IsSpace(r) || address && strings.ContainsRune(`<>@"().`, r)
	})
	if len(words) == 0 || bytes.Contains(h, []byte("=?")) {
		return false
	}
	lower := bytes.ToLower(h)
	for _, w := range words {
		if !bytes.Contains(lower, []byte(w)) {
			return true
		}
	}
	return false
}

func (m *matcher) entity() (*gomessage.Entity, error) {
	if m.body == nil {
		read := m.pre
		if read == nil {
			read = func() ([]byte, error) { return m.s.s.store.Body(m.ctx, m.msg) }
		}
		b, err := read()
		if err != nil {
			return nil, err
		}
		m.body = b
	}
	e, err := gomessage.Read(bytes.NewReader(m.body))
	if e == nil { // a header line go-message rejects
		e, err = gomessage.Read(bytes.NewReader(parseable(m.body, m.msg.HeaderLen)))
	}
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(m.body))
	}
	_ = err // unknown charsets and the like: search what could be read
	return e, nil
}

func (m *matcher) match(c *imap.SearchCriteria) (bool, error) {
	for i := range c.SeqNum {
		if !m.in(&c.SeqNum[i], c.SeqNum[i], m.seq, true) {
			return false, nil
		}
	}
	for i := range c.UID {
		if !m.in(&c.UID[i], c.UID[i], m.msg.UID, false) {
			return false, nil
		}
	}
	if !matchDate(m.msg.Date, c.Since, c.Before) {
		return false, nil
	}
	for _, f := range c.Flag {
		if !m.s.sel.has(m.msg, f) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if m.s.sel.has(m.msg, f) {
			return false, nil
		}
	}
	if c.Larger != 0 && m.msg.Size <= c.Larger {
		return false, nil
	}
	if c.Smaller != 0 && m.msg.Size >= c.Smaller {
		return false, nil
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		raw, err := m.rawHdr()
		if err != nil {
			return false, err
		}
		for _, f := range c.Header {
			if cannotMatch(raw, f.Value, addressField(f.Key)) {
				return false, nil
			}
		}
		h, err := m.hdr()
		if err != nil {
			return false, err
		}
		for _, f := range c.Header {
			if !matchFields(h.FieldsByKey(f.Key), f.Value) && !(addressField(f.Key) && matchAddresses(h.FieldsByKey(f.Key), f.Value)) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
	}
	for _, text := range c.Text {
		e, err := m.entity()
		if err != nil {
			return false, err
		}
		if !matchEntity(e, text, true) {
			return false, nil
		}
	}
	for _, text := range c.Body {
		e, err := m.entity()
		if err != nil {
			return false, err
		}
		if !matchEntity(e, text, false) {
			return false, nil
		}
	}
	for i := range c.Not {
		ok, err := m.match(&c.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		a, err := m.match(&c.Or[i][0])
		if err != nil {
			return false, err
		}
		if a {
			continue
		}
		b, err := m.match(&c.Or[i][1])
		if err != nil || !b {
			return false, err
		}
	}
	return true, nil
}

// matchDate compares dates only, ignoring time and zone (RFC 3501).
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	if !before.IsZero() && !t.Before(before) {
		return false
	}
	return true
}

// addressField reports whether header field key holds addresses.
func addressField(key string) bool {
	switch strings.ToLower(key) {
	case "from", "to", "cc", "bcc", "sender", "reply-to":
		return true
	}
	return false
}

// matchAddresses reports whether pattern is in one of the fields'
// addresses as read (ENVELOPE's parser): "Name <mailbox@host>" and group
// names, so comments, quoting and folding inside an address do not hide
// it from a search.
func matchAddresses(fields gomessage.HeaderFields, pattern string) bool {
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		for _, a := range envelopeAddresses(fields.Value()) {
			s := a.Mailbox
			if a.Host != "" {
				s = a.Name + " <" + a.Mailbox + "@" + a.Host + ">"
			}
			if strings.Contains(strings.ToLower(s), pattern) {
				return true
			}
		}
	}
	return false
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, includeHeader bool) bool {
	if pattern == "" {
		return true
	}
	if includeHeader && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, includeHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, err := io.ReadAll(e.Body)
	if err != nil && len(b) == 0 {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(pattern)))
}
