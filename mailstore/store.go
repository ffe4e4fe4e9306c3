// Package mailstore keeps mailboxes on a RAIS-FS cluster: per user the
// mailboxes (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counts, subscription)
// and per message its UID, flags, internal date, size, MODSEQ, cached
// header and the object that holds its bytes. It reaches the cluster only
// through the client SDK: the index lives in the masters' records
// namespace, the bytes in objects, and every change is one transaction
// that compares the mailbox record's version, so two front ends never hand
// out the same UID and a change made through one is seen by the next read
// through any other. Front ends (IMAP, LMTP) hold no state of their own.
//
// Layout (records, under "mail/u/USER/"):
//
//	user               userRec: next mailbox id, last UIDVALIDITY
//	mb/NAME            mboxRec: id, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counts
//	msg/ID/UID         msgRec: object key, flags, date, size, MODSEQ
//	hdr/ID/UID         the message's header block (for ENVELOPE, HEADER
//	                   fetches and header searches without reading bodies)
//	gone/ID            a deleted mailbox whose messages are still being removed
//	sub/NAME           a subscription (kept when the mailbox goes: RFC 3501)
//
// Objects: "mail/u/USER/b/RANDOM", one per message record, committed in
// the same transaction as the record (client.Upload, Txn.CommitObject). A
// message delivered to many users is uploaded once and committed under
// each recipient's key (one more reference to the same blob, no copy); a
// COPY is a link; the bytes go when the last reference is expunged.
package mailstore

import (
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raisfs/raisfs/client"
)

// Errors.
var (
	ErrNoMailbox     = errors.New("no such mailbox")
	ErrMailboxExists = errors.New("mailbox exists")
	ErrBadName       = errors.New("invalid mailbox or user name")
	ErrTooLarge      = errors.New("message too large")
	// ErrBusy: too many concurrent changes to one mailbox; try again.
	ErrBusy = errors.New("mailbox busy")
)

// Inbox is the one mailbox every user has.
const Inbox = "INBOX"

// Delim is the hierarchy delimiter of mailbox names.
const Delim = '/'

// maxHeaderCache is the largest header block kept in the index; a longer
// one is read from the message when needed.
const maxHeaderCache = 64 << 10

// Store is safe for concurrent use.
type Store struct {
	c   *client.Client
	log *slog.Logger
	// maxSize bounds appended and delivered messages.
	maxSize      int64
	batchTimeout time.Duration

	bodies *bodyCache // nil: none

	mu     sync.Mutex
	queues map[string]*mboxQueue // by user NUL mailbox: messages waiting to be indexed
}

// Options are a Store's settings.
type Options struct {
	// MaxMessageSize bounds appended and delivered messages (0: 64 MiB).
	MaxMessageSize int64
	// BodyCache is the memory, in bytes, for recently stored or read
	// message bodies (0: none). Bodies are immutable, so a cached one is
	// never stale; see bodyCache.
	BodyCache int64
	Logger    *slog.Logger
}

// New returns a store on the cluster c.
func New(c *client.Client, opts Options) *Store {
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Store{
		c: c, log: opts.Logger, maxSize: opts.MaxMessageSize, bodies: newBodyCache(opts.BodyCache),
		batchTimeout: 30 * time.Second, queues: map[string]*mboxQueue{},
	}
}

// CacheStats returns the body cache's counters.
func (s *Store) CacheStats() CacheStats { return s.bodies.stats() }

// Ping checks that the cluster answers a linearizable read.
func (s *Store) Ping(ctx context.Context) error {
	_, _, err := s.c.Record(ctx, "mail/ping")
	return err
}

// MaxMessageSize is the largest message Append and Deliver take.
func (s *Store) MaxMessageSize() int64 { return s.maxSize }

// ValidUser reports whether name can be a user: 1-128 bytes, printable,
// no '/', no spaces.
func ValidUser(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == '/' || r == 0x7f {
			return false
		}
	}
	return true
}

// ValidMailbox reports whether name can be a mailbox name: 1-512 bytes,
// no control characters, no empty hierarchy level, and none of LIST's
// wildcards (* and %), which no client could list on their own.
func ValidMailbox(name string) bool {
	if len(name) == 0 || len(name) > 512 || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return false
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f || r == '*' || r == '%' {
			return false
		}
	}
	return true
}

// CanonicalMailbox folds INBOX's case (it is case-insensitive; nothing
// else is).
func CanonicalMailbox(name string) string {
	if strings.EqualFold(name, Inbox) {
		return Inbox
	}
	if len(name) > 6 && strings.EqualFold(name[:6], Inbox+"/") {
		return Inbox + name[5:]
	}
	return name
}

type userRec struct {
	NextID          uint64 `json:"next_id"`
	LastUIDValidity uint32 `json:"last_uidvalidity"`
}

type mboxRec struct {
	ID            uint64 `json:"id"`
	UIDValidity   uint32 `json:"uidvalidity"`
	UIDNext       uint32 `json:"uidnext"`
	HighestModSeq uint64 `json:"highestmodseq"`
	// Subscribed: subscribed before subscriptions had records of their
	// own (sub/NAME); read as one, never written true any more.
	Subscribed bool   `json:"subscribed,omitempty"`
	Messages   uint32 `json:"messages"`
	Unseen     uint32 `json:"unseen"`
	Deleted    uint32 `json:"deleted"`
	Size       int64  `json:"size"`
	// FirstRecent is the lowest UID no session has claimed as \Recent
	// yet. 0 in records written before it existed is read as UIDNEXT:
	// after an upgrade nothing already there turns \Recent at once; the
	// next write of the record keeps that value, so mail from then on is.
	FirstRecent uint32 `json:"fr,omitempty"`
}

type msgRec struct {
	Obj   string   `json:"o"`
	Flags []string `json:"f,omitempty"`
	Date  int64    `json:"d"`
	// Zone is the internal date's offset from UTC in seconds, as the
	// APPEND gave it: INTERNALDATE comes back in it, and SEARCH BEFORE,
	// ON and SINCE compare the date in it (RFC 3501).
	Zone   int32  `json:"z,omitempty"`
	Size   int64  `json:"s"`
	ModSeq uint64 `json:"m"`
	// HeaderLen is the length of the header block (through the blank
	// line); HeaderCached says whether hdr/ID/UID holds it.
	HeaderLen    int64 `json:"h"`
	HeaderCached bool  `json:"hc,omitempty"`
}

// Mailbox is a mailbox as read.
type Mailbox struct {
	Name          string
	ID            uint64
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Subscribed    bool
	Messages      uint32
	Unseen        uint32
	Deleted       uint32
	Size          int64
	// FirstRecent is the lowest UID no session has claimed as \Recent
	// (RFC 3501): messages from it to UIDNext are recent for the next
	// session that selects the mailbox read-write (ClaimRecent).
	FirstRecent uint32
	// Version changes with every change to the mailbox or its messages.
	Version uint64
}

// Message is one message's index entry.
type Message struct {
	UID       uint32
	Flags     []string // canonical case, sorted
	Date      time.Time
	Size      int64
	ModSeq    uint64
	HeaderLen int64

	obj          string
	headerCached bool
}

func userPrefix(user string) string    { return "mail/u/" + user + "/" }
func userKey(user string) string       { return userPrefix(user) + "user" }
func mboxKey(user, name string) string { return userPrefix(user) + "mb/" + name }
func subKey(user, name string) string  { return userPrefix(user) + "sub/" + name }
func msgPrefix(user string, id uint64) string {
	return fmt.Sprintf("%smsg/%016x/", userPrefix(user), id)
}
func msgKey(user string, id uint64, uid uint32) string {
	return fmt.Sprintf("%s%08x", msgPrefix(user, id), uid)
}
func hdrKey(user string, id uint64, uid uint32) string {
	return fmt.Sprintf("%shdr/%016x/%08x", userPrefix(user), id, uid)
}
func newObjKey(user string) string {
	var b [16]byte
	crand.Read(b[:])
	return userPrefix(user) + "b/" + hex.EncodeToString(b[:])
}

func (r mboxRec) mailbox(name string, version uint64) Mailbox {
	return Mailbox{Name: name, ID: r.ID, UIDValidity: r.UIDValidity, UIDNext: r.UIDNext, HighestModSeq: r.HighestModSeq,
		Subscribed: r.Subscribed, Messages: r.Messages, Unseen: r.Unseen, Deleted: r.Deleted, Size: r.Size,
		FirstRecent: cmp.Or(r.FirstRecent, r.UIDNext), Version: version}
}

func (m Mailbox) rec() mboxRec {
	return mboxRec{ID: m.ID, UIDValidity: m.UIDValidity, UIDNext: m.UIDNext, HighestModSeq: m.HighestModSeq,
		Subscribed: m.Subscribed, Messages: m.Messages, Unseen: m.Unseen, Deleted: m.Deleted, Size: m.Size,
		FirstRecent: m.FirstRecent}
}

func (r msgRec) message(uid uint32) Message {
	date := time.Unix(0, r.Date).In(time.FixedZone("", int(r.Zone)))
	return Message{UID: uid, Flags: r.Flags, Date: date, Size: r.Size, ModSeq: r.ModSeq, HeaderLen: r.HeaderLen, obj: r.Obj, headerCached: r.HeaderCached}
}

func (m Message) rec() msgRec {
	_, zone := m.Date.Zone()
	return msgRec{Obj: m.obj, Flags: m.Flags, Date: m.Date.UnixNano(), Zone: int32(zone), Size: m.Size, ModSeq: m.ModSeq, HeaderLen: m.HeaderLen, HeaderCached: m.headerCached}
}

// Has reports whether m carries flag (compared case-insensitively).
func (m Message) Has(flag string) bool {
	return slices.ContainsFunc(m.Flags, func(f string) bool { return strings.EqualFold(f, flag) })
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	return b
}

var systemFlags = []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`}

// CanonicalFlag returns the canonical case of a system flag (clients
// that sync ignore `\seen`); keywords keep the case they were first given.
func CanonicalFlag(f string) string {
	for _, s := range systemFlags {
		if strings.EqualFold(f, s) {
			return s
		}
	}
	return f
}

// validFlag: an atom, optionally with a leading backslash; \Recent cannot
// be set.
func validFlag(f string) bool {
	if f == "" || len(f) > 128 || strings.EqualFold(f, `\Recent`) {
		return false
	}
	for i, r := range f {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`(){%*"]`, r) || (r == '\\' && i > 0) {
			return false
		}
	}
	return true
}

// normFlags canonicalises, dedups (case-insensitively) and sorts flags.
func normFlags(in []string) ([]string, error) {
	var out []string
	for _, f := range in {
		if !validFlag(f) {
			return nil, fmt.Errorf("flag %q: %w", f, client.ErrInvalidArgument)
		}
		f = CanonicalFlag(f)
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, f) }) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out, nil
}

// retry runs fn until it does not fail with a compare conflict, with
// jittered backoff: contention on one mailbox between front ends.
func retry(ctx context.Context, fn func() error) error {
	backoff := time.Millisecond
	for attempt := 0; ; attempt++ {
		err := fn()
		if !errors.Is(err, client.ErrCompareFailed) {
			return err
		}
		if attempt == 50 {
			return fmt.Errorf("%w: %w", ErrBusy, err)
		}
		t := time.NewTimer(backoff + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// readMailbox reads mailbox name of user.
func (s *Store) readMailbox(ctx context.Context, user, name string) (Mailbox, error) {
	if !ValidUser(user) {
		return Mailbox{}, fmt.Errorf("user %q: %w", user, ErrBadName)
	}
	name = CanonicalMailbox(name)
	if !ValidMailbox(name) {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrBadName)
	}
	// Every command reads its mailbox: through the client's record cache
	// (linearizable; a plain read without client.Config.RecordCache).
	r, ok, err := s.c.CachedRecord(ctx, mboxKey(user, name))
	if err != nil {
		return Mailbox{}, fmt.Errorf("read mailbox %q: %w", name, err)
	}
	if !ok {
		if name == Inbox {
			// Every user has an INBOX; create it on first use.
			if err := s.CreateMailbox(ctx, user, Inbox); err != nil && !errors.Is(err, ErrMailboxExists) {
				return Mailbox{}, err
			}
			return s.readMailbox(ctx, user, name)
		}
		return Mailbox{}, fmt.Errorf("%q: %w", name, ErrNoMailbox)
	}
	var rec mboxRec
	if err := json.Unmarshal(r.Value, &rec); err != nil {
		return Mailbox{}, fmt.Errorf("decode mailbox %q: %w", name, err)
	}
	return rec.mailbox(name, r.Version), nil
}

// MailboxChanged returns a channel closed when a change to mailbox name
// of user has been made through any front end, as far as the client's
// record cache learns of it (nil without one: poll). Call stop when done.
func (s *Store) MailboxChanged(user, name string) (changed <-chan struct{}, stop func()) {
	return s.c.RecordChanged(mboxKey(user, CanonicalMailbox(name)))
}

// Mailbox returns mailbox name of user (INBOX is created on first use).
func (s *Store) Mailbox(ctx context.Context, user, name string) (Mailbox, error) {
	return s.readMailbox(ctx, user, name)
}

// Mailboxes lists user's mailboxes, INBOX first.
func (s *Store) Mailboxes(ctx context.Context, user string) ([]Mailbox, error) {
	if !ValidUser(user) {
		return nil, fmt.Errorf("user %q: %w", user, ErrBadName)
	}
	prefix := userPrefix(user) + "mb/"
	var out []Mailbox
	err := s.eachRecord(ctx, prefix, "", 1000, func(r client.Record) error {
		var rec mboxRec
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			return fmt.Errorf("decode mailbox %q: %w", r.Key, err)
		}
		out = append(out, rec.mailbox(strings.TrimPrefix(r.Key, prefix), r.Version))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	if !slices.ContainsFunc(out, func(m Mailbox) bool { return m.Name == Inbox }) {
		// Every user has an INBOX: made on first use (one read more, once).
		m, err := s.readMailbox(ctx, user, Inbox)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortStableFunc(out, func(a, b Mailbox) int {
		if (a.Name == Inbox) != (b.Name == Inbox) {
			if a.Name == Inbox {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// CreateMailbox creates mailbox name (ErrMailboxExists if it does).
func (s *Store) CreateMailbox(ctx context.Context, user, name string) error {
	name = CanonicalMailbox(name)
	if !ValidUser(user) || !ValidMailbox(name) {
		return fmt.Errorf("create %q for %q: %w", name, user, ErrBadName)
	}
	return retry(ctx, func() error {
		ur, _, err := s.c.Record(ctx, userKey(user))
		if err != nil {
			return err
		}
		var u userRec
		if ur.Version != 0 {
			if err := json.Unmarshal(ur.Value, &u); err != nil {
				return fmt.Errorf("decode user %q: %w", user, err)
			}
		}
		if _, ok, err := s.c.Record(ctx, mboxKey(user, name)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%q: %w", name, ErrMailboxExists)
		}
		u.NextID++
		// UIDVALIDITY: the time, kept increasing, so a mailbox deleted and
		// created again never reuses one (clients would keep stale caches).
		u.LastUIDValidity = max(u.LastUIDValidity+1, uint32(time.Now().Unix()))
		rec := mboxRec{ID: u.NextID, UIDValidity: u.LastUIDValidity, UIDNext: 1, HighestModSeq: 1, FirstRecent: 1}
		t := new(client.Txn).
			IfVersion(userKey(user), ur.Version).IfVersion(mboxKey(user, name), 0).
			Put(userKey(user), mustJSON(u)).Put(mboxKey(user, name), mustJSON(rec))
		if name == Inbox {
			// Only INBOX starts subscribed: CREATE does not subscribe
			// (RFC 3501; clients that want it SUBSCRIBE).
			t.Put(subKey(user, Inbox), nil)
		}
		_, err = s.c.Commit(ctx, t)
		if errors.Is(err, client.ErrOutcomeUnknown) {
			if _, ok, rerr := s.c.Record(ctx, mboxKey(user, name)); rerr == nil && ok {
				return nil // it exists: ours or someone's; either way created
			}
		}
		return err
	})
}

// Subscribe sets name's subscription.
//
// A subscription is a record of its own, not part of the mailbox: RFC
// 3501 has it outlive the mailbox (DELETE keeps it, LIST (SUBSCRIBED)
// shows it \NonExistent) until UNSUBSCRIBE. Subscribing needs the
// mailbox to exist (RFC 3501 allows the check; Dovecot makes it);
// unsubscribing does not.
func (s *Store) Subscribe(ctx context.Context, user, name string, on bool) error {
	name = CanonicalMailbox(name)
	if !ValidUser(user) || !ValidMailbox(name) {
		return fmt.Errorf("subscribe %q for %q: %w", name, user, ErrBadName)
	}
	if on {
		if _, err := s.readMailbox(ctx, user, name); err != nil {
			return err
		}
		if _, err := s.c.Commit(ctx, new(client.Txn).Put(subKey(user, name), nil)); err != nil {
			return fmt.Errorf("subscribe to %q: %w", name, err)
		}
		return nil
	}
	err := s.updateMailbox(ctx, user, name, func(m *Mailbox, t *client.Txn) error {
		m.Subscribed = false // the old place of a subscription
		t.Delete(subKey(user, name))
		return nil
	})
	if errors.Is(err, ErrNoMailbox) {
		_, err = s.c.Commit(ctx, new(client.Txn).Delete(subKey(user, name)))
	}
	if err != nil {
		return fmt.Errorf("unsubscribe from %q: %w", name, err)
	}
	return nil
}

// Subscriptions returns user's subscribed names, existing or not.
func (s *Store) Subscriptions(ctx context.Context, user string) (map[string]bool, error) {
	if !ValidUser(user) {
		return nil, fmt.Errorf("user %q: %w", user, ErrBadName)
	}
	subs := map[string]bool{}
	prefix := userPrefix(user) + "sub/"
	err := s.eachRecord(ctx, prefix, "", 1000, func(r client.Record) error {
		subs[strings.TrimPrefix(r.Key, prefix)] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return subs, nil
}

// eachRecord calls fn for every record under prefix after key after, in
// key order, reading pages of up to page records.
func (s *Store) eachRecord(ctx context.Context, prefix, after string, page int, fn func(client.Record) error) error {
	for {
		p, err := s.c.Records(ctx, prefix, after, page)
		if err != nil {
			return err
		}
		for _, r := range p.Records {
			if err := fn(r); err != nil {
				return err
			}
		}
		if p.Next == "" {
			return nil
		}
		after = p.Next
	}
}

// updateMailbox reads name, lets fn change it (and add ops to the
// transaction), and commits it if nothing changed meanwhile; retried on
// conflicts. fn must be safe to run more than once.
func (s *Store) updateMailbox(ctx context.Context, user, name string, fn func(m *Mailbox, t *client.Txn) error) error {
	return retry(ctx, func() error {
		m, err := s.readMailbox(ctx, user, name)
		if err != nil {
			return err
		}
		t := new(client.Txn).IfVersion(mboxKey(user, m.Name), m.Version)
		if err := fn(&m, t); err != nil {
			return err
		}
		t.Put(mboxKey(user, m.Name), mustJSON(m.rec()))
		_, err = s.c.Commit(ctx, t)
		return err
	})
}

// RenameMailbox renames old (and the mailboxes below it) to new. Messages
// stay where they are: their records are keyed by the mailbox's id, not
// its name. Renaming INBOX moves its messages to new and leaves an empty
// INBOX (RFC 3501).
func (s *Store) RenameMailbox(ctx context.Context, user, oldName, newName string) error {
	oldName, newName = CanonicalMailbox(oldName), CanonicalMailbox(newName)
	if !ValidUser(user) || !ValidMailbox(oldName) || !ValidMailbox(newName) || newName == Inbox {
		return fmt.Errorf("rename %q to %q: %w", oldName, newName, ErrBadName)
	}
	return retry(ctx, func() error {
		all, err := s.Mailboxes(ctx, user)
		if err != nil {
			return err
		}
		subs, err := s.Subscriptions(ctx, user)
		if err != nil {
			return err
		}
		t := new(client.Txn)
		found := false
		for _, m := range all {
			if m.Name == newName {
				return fmt.Errorf("%q: %w", newName, ErrMailboxExists)
			}
		}
		for _, m := range all {
			var to string
			switch {
			case m.Name == oldName:
				to = newName
				found = true
			case oldName != Inbox && strings.HasPrefix(m.Name, oldName+"/"):
				to = newName + m.Name[len(oldName):]
			default:
				continue
			}
			t.IfVersion(mboxKey(user, m.Name), m.Version).IfVersion(mboxKey(user, to), 0).
				Delete(mboxKey(user, m.Name)).Put(mboxKey(user, to), mustJSON(m.rec()))
			if subs[m.Name] { // the subscription follows (not INBOX's: see below)
				t.Delete(subKey(user, m.Name)).Put(subKey(user, to), nil)
			}
		}
		if !found {
			return fmt.Errorf("%q: %w", oldName, ErrNoMailbox)
		}
		if oldName == Inbox {
			// The old INBOX record moved away: a new, empty INBOX with a new
			// id takes its place.
			ur, _, err := s.c.Record(ctx, userKey(user))
			if err != nil {
				return err
			}
			var u userRec
			if err := json.Unmarshal(ur.Value, &u); err != nil {
				return fmt.Errorf("decode user %q: %w", user, err)
			}
			u.NextID++
			u.LastUIDValidity = max(u.LastUIDValidity+1, uint32(time.Now().Unix()))
			rec := mboxRec{ID: u.NextID, UIDValidity: u.LastUIDValidity, UIDNext: 1, HighestModSeq: 1, Subscribed: true, FirstRecent: 1}
			// Replace the Delete of INBOX by a Put of the new one.
			t2 := new(client.Txn).IfVersion(userKey(user), ur.Version).Put(userKey(user), mustJSON(u))
			for _, m := range all {
				if m.Name == Inbox {
					t2.IfVersion(mboxKey(user, Inbox), m.Version).IfVersion(mboxKey(user, newName), 0).
						Put(mboxKey(user, Inbox), mustJSON(rec)).Put(mboxKey(user, newName), mustJSON(m.rec()))
				}
			}
			t = t2
		}
		_, err = s.c.Commit(ctx, t)
		return err
	})
}

// DeleteMailbox deletes name and every message in it. INBOX cannot be
// deleted. The mailbox disappears in one step; its messages are removed
// after, in batches.
func (s *Store) DeleteMailbox(ctx context.Context, user, name string) error {
	name = CanonicalMailbox(name)
	if name == Inbox {
		return fmt.Errorf("INBOX cannot be deleted: %w", ErrBadName)
	}
	var gone Mailbox
	err := retry(ctx, func() error {
		m, err := s.readMailbox(ctx, user, name)
		if err != nil {
			return err
		}
		gone = m
		// The tombstone names the id whose messages are still to remove,
		// so that a purge cut short (a crash) is finished by Sweep.
		t := new(client.Txn).IfVersion(mboxKey(user, name), m.Version).Delete(mboxKey(user, name)).
			Put(goneKey(user, m.ID), nil)
		if m.Subscribed {
			t.Put(subKey(user, name), nil) // the subscription outlives the mailbox
		}
		_, err = s.c.Commit(ctx, t)
		return err
	})
	if err != nil {
		return err
	}
	return s.purge(ctx, user, gone.ID)
}

// Sweep finishes the removal of deleted mailboxes' messages that was cut
// short (a front end died mid-DELETE). It costs one small read when there
// is nothing to do; front ends call it when a user logs in.
func (s *Store) Sweep(ctx context.Context, user string) error {
	if !ValidUser(user) {
		return fmt.Errorf("user %q: %w", user, ErrBadName)
	}
	p, err := s.c.Records(ctx, userPrefix(user)+"gone/", "", 100)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", user, err)
	}
	for _, r := range p.Records {
		var id uint64
		if _, err := fmt.Sscanf(r.Key[strings.LastIndexByte(r.Key, '/')+1:], "%016x", &id); err != nil {
			continue
		}
		s.log.Info("finishing the removal of a deleted mailbox", "user", user, "mailbox_id", id)
		if err := s.purge(ctx, user, id); err != nil {
			return err
		}
	}
	return nil
}

func goneKey(user string, id uint64) string { return fmt.Sprintf("%sgone/%016x", userPrefix(user), id) }

// purge removes every message record (and object) of mailbox id, which
// no mailbox record names any more, then its tombstone.
func (s *Store) purge(ctx context.Context, user string, id uint64) error {
	for {
		p, err := s.c.Records(ctx, msgPrefix(user, id), "", 500)
		if err != nil {
			return fmt.Errorf("purge mailbox %d: %w", id, err)
		}
		if len(p.Records) == 0 {
			if _, err := s.c.Commit(ctx, new(client.Txn).Delete(goneKey(user, id))); err != nil {
				return fmt.Errorf("purge mailbox %d: %w", id, err)
			}
			return nil
		}
		t := new(client.Txn)
		for _, r := range p.Records {
			var rec msgRec
			if err := json.Unmarshal(r.Value, &rec); err != nil {
				return fmt.Errorf("decode %q: %w", r.Key, err)
			}
			uid := uidOfKey(r.Key)
			t.Delete(r.Key).DeleteObject(rec.Obj)
			if rec.HeaderCached {
				t.Delete(hdrKey(user, id, uid))
			}
		}
		if _, err := s.c.Commit(ctx, t); err != nil {
			return fmt.Errorf("purge mailbox %d: %w", id, err)
		}
	}
}

func uidOfKey(k string) uint32 {
	var uid uint32
	fmt.Sscanf(k[strings.LastIndexByte(k, '/')+1:], "%08x", &uid)
	return uid
}

// Messages returns every message of m, by UID.
func (s *Store) Messages(ctx context.Context, user string, m Mailbox) ([]Message, error) {
	return s.Changed(ctx, user, m, 0)
}

// Changed returns the index entries of mailbox m written after version
// since (a Mailbox.Version read earlier), in UID order: messages added
// and messages whose flags changed since then. Expunged messages do not
// show; a reader learns of them from m.Messages (see mailfront's sync).
func (s *Store) Changed(ctx context.Context, user string, m Mailbox, since uint64) ([]Message, error) {
	var out []Message
	after := ""
	for {
		p, err := s.c.RecordsSince(ctx, msgPrefix(user, m.ID), after, 10000, since)
		if err != nil {
			return nil, fmt.Errorf("read messages of %q: %w", m.Name, err)
		}
		for _, r := range p.Records {
			var rec msgRec
			if err := json.Unmarshal(r.Value, &rec); err != nil {
				return nil, fmt.Errorf("decode %q: %w", r.Key, err)
			}
			out = append(out, rec.message(uidOfKey(r.Key)))
		}
		if p.Next == "" {
			return out, nil
		}
		after = p.Next
	}
}

// Selection picks messages by UID: All, or UIDs(list).
type Selection struct {
	all  bool
	uids []uint32 // sorted, deduplicated
}

// All selects every message.
func All() Selection { return Selection{all: true} }

// UIDs selects the messages with these UIDs (none if empty).
func UIDs(uids ...uint32) Selection {
	u := slices.Clone(uids)
	slices.Sort(u)
	return Selection{uids: slices.Compact(u)}
}

// messagesOf returns the messages of m that sel picks. A UID range that is
// dense enough is one ranged read of the index, not a scan of the whole
// mailbox.
func (s *Store) messagesOf(ctx context.Context, user string, m Mailbox, sel Selection) ([]Message, error) {
	if sel.all {
		return s.Messages(ctx, user, m)
	}
	uids := sel.uids
	if len(uids) == 0 {
		return nil, nil
	}
	lo, hi := uids[0], uids[len(uids)-1]
	in := func(u uint32) bool { _, ok := slices.BinarySearch(uids, u); return ok }
	var msgs []Message
	if span := int(hi-lo) + 1; span <= 4*len(uids)+256 && span <= 10000 {
		after := msgKey(user, m.ID, lo-1)
		for after != "" {
			p, err := s.c.Records(ctx, msgPrefix(user, m.ID), after, span)
			if err != nil {
				return nil, fmt.Errorf("read messages of %q: %w", m.Name, err)
			}
			after = p.Next
			for _, r := range p.Records {
				uid := uidOfKey(r.Key)
				if uid > hi {
					after = ""
					break
				}
				var rec msgRec
				if err := json.Unmarshal(r.Value, &rec); err != nil {
					return nil, fmt.Errorf("decode %q: %w", r.Key, err)
				}
				msgs = append(msgs, rec.message(uid))
			}
		}
	} else {
		all, err := s.Messages(ctx, user, m)
		if err != nil {
			return nil, err
		}
		msgs = all
	}
	return slices.DeleteFunc(msgs, func(msg Message) bool { return !in(msg.UID) }), nil
}

// HeaderBlockLen returns the length of body's header block (through the
// blank line that ends it; the whole message if there is none).
func HeaderBlockLen(body []byte) int {
	for i := 0; i < len(body); {
		j := bytes.IndexByte(body[i:], '\n')
		if j < 0 {
			return len(body)
		}
		line := body[i : i+j]
		i += j + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
	return len(body)
}

// NewMessage describes a message to append.
type NewMessage struct {
	Body  []byte
	Flags []string
	Date  time.Time // zero: now
	// ClaimRecent: the caller has the mailbox selected read-write, so the
	// message, and any others no session has claimed yet, are \Recent for
	// it; claimed in the same transaction as the index entry (see
	// ClaimRecent), so an APPEND costs no second commit.
	ClaimRecent bool
}

// UIDRange is the UIDs from From up to, not including, To.
type UIDRange struct{ From, To uint32 }

// Contains reports whether uid is in r.
func (r UIDRange) Contains(uid uint32) bool { return uid >= r.From && uid < r.To }

// Appended is what Append did.
type Appended struct {
	UIDValidity, UID uint32
	// Recent is the UIDs the caller claimed as \Recent (empty unless
	// NewMessage.ClaimRecent).
	Recent UIDRange
}

// Append adds msg to mailbox name and returns its UIDVALIDITY and UID,
// once the bytes are durable on their replicas and the index entry is
// committed. msg.Body may be kept by the body cache: the caller must not
// modify it afterwards.
func (s *Store) Append(ctx context.Context, user, name string, msg NewMessage) (uidValidity, uid uint32, err error) {
	a, err := s.AppendMessage(ctx, user, name, msg)
	return a.UIDValidity, a.UID, err
}

// AppendMessage is Append, returning the \Recent claim too.
func (s *Store) AppendMessage(ctx context.Context, user, name string, msg NewMessage) (Appended, error) {
	if int64(len(msg.Body)) > s.maxSize {
		return Appended{}, fmt.Errorf("%d bytes, limit %d: %w", len(msg.Body), s.maxSize, ErrTooLarge)
	}
	flags, err := normFlags(msg.Flags)
	if err != nil {
		return Appended{}, err
	}
	if !ValidUser(user) || !ValidMailbox(CanonicalMailbox(name)) {
		return Appended{}, fmt.Errorf("append to %q for %q: %w", name, user, ErrBadName)
	}
	r := &indexReq{obj: newObjKey(user), flags: flags, date: msg.Date, claim: msg.ClaimRecent}
	err = s.indexMessage(ctx, user, name, r, msg.Body)
	return Appended{UIDValidity: r.uidValidity, UID: r.uid, Recent: r.recent}, err
}

// ClaimRecent makes the caller the one session that sees mailbox name's
// unclaimed messages as \Recent (RFC 3501: the first session to be told
// of a message): it moves the mailbox's FirstRecent to UIDNext in one
// transaction and returns the UIDs it claimed, and the change (the
// mailbox as read and as written; nothing is written when there is
// nothing to claim). Two sessions, on any front ends, never claim the
// same UID.
func (s *Store) ClaimRecent(ctx context.Context, user, name string) (UIDRange, Change, error) {
	var got UIDRange
	var ch Change
	err := retry(ctx, func() error {
		got = UIDRange{}
		m, err := s.readMailbox(ctx, user, name)
		if err != nil {
			return err
		}
		ch = Change{From: m.Version, To: m.Version, After: m}
		if m.FirstRecent >= m.UIDNext {
			return nil
		}
		claim := UIDRange{From: m.FirstRecent, To: m.UIDNext}
		m.FirstRecent = m.UIDNext
		to, err := s.c.Commit(ctx, new(client.Txn).IfVersion(mboxKey(user, m.Name), m.Version).
			Put(mboxKey(user, m.Name), mustJSON(m.rec())))
		if err != nil {
			// An unknown outcome counts as not claimed: the messages are
			// then recent for no session, never for two.
			return fmt.Errorf("claim recent messages of %q: %w", m.Name, err)
		}
		m.Version = to
		got, ch.To, ch.After = claim, to, m
		return nil
	})
	return got, ch, err
}

// RecentCount counts the messages of m no session has claimed as \Recent
// (STATUS RECENT): one ranged read of the index from m.FirstRecent.
func (s *Store) RecentCount(ctx context.Context, user string, m Mailbox) (uint32, error) {
	if m.FirstRecent >= m.UIDNext {
		return 0, nil
	}
	n := uint32(0)
	after := ""
	if m.FirstRecent > 1 {
		after = msgKey(user, m.ID, m.FirstRecent-1)
	}
	err := s.eachRecord(ctx, msgPrefix(user, m.ID), after, 10000, func(client.Record) error { n++; return nil })
	if err != nil {
		return 0, fmt.Errorf("count recent messages of %q: %w", m.Name, err)
	}
	return n, nil
}

// indexMessage indexes body in mailbox name of user, committing it as
// object obj in the same transaction as the index entry: the message
// appears whole or not at all. up is its upload, nil for none yet; an
// upload that can no longer be committed (its lease ran out) is made
// again, twice at most. An indexed body joins the body cache.
func (s *Store) indexMessage(ctx context.Context, user, name string, r *indexReq, body []byte) error {
	for attempt := 0; ; attempt++ {
		if r.up == nil {
			up, err := s.c.Upload(ctx, r.obj, bytes.NewReader(body), nil)
			if err != nil {
				return fmt.Errorf("store message: %w", err)
			}
			r.up = up
		}
		err := s.index(ctx, user, name, r, body)
		if attempt < 2 && uploadGone(err) {
			r.up = nil
			continue
		}
		if err == nil {
			s.bodies.add(r.obj, body)
		}
		return err
	}
}

// uploadGone reports whether err says an upload can no longer be
// committed (its lease ended, or the blob it deduplicated onto was
// deleted meanwhile): upload again.
func uploadGone(err error) bool {
	return errors.Is(err, client.ErrLeaseExpired) || (errors.Is(err, client.ErrNotFound) && !errors.Is(err, ErrNoMailbox))
}

// indexReq is one message to index.
type indexReq struct {
	obj   string         // the message's object key
	up    *client.Upload // its bytes, committed as obj with the entry; nil: upload first
	hdr   []byte         // the header block, if it is cached
	size  int64
	hlen  int64
	flags []string
	date  time.Time
	claim bool // claim the mailbox's unclaimed \Recent messages
	// Filled in when done is closed.
	uidValidity, uid uint32
	recent           UIDRange // claimed, if claim
	err              error
	done             chan struct{}
}

// mboxQueue gathers the messages waiting for one mailbox.
type mboxQueue struct {
	pending []*indexReq
	running bool
}

// maxIndexBatch bounds the messages indexed in one transaction.
const maxIndexBatch = 128

// index adds the index entry for a message and commits its bytes (up) as
// object obj in the same transaction.
//
// Group commit: messages for the same mailbox that arrive while a
// transaction for it is in flight wait and go together in the next one
// (one Raft commit, consecutive UIDs), instead of each competing for the
// mailbox record's version and retrying.
func (s *Store) index(ctx context.Context, user, name string, r *indexReq, body []byte) error {
	if r.date.IsZero() {
		r.date = time.Now()
	}
	hlen := HeaderBlockLen(body)
	r.size, r.hlen, r.done, r.err = int64(len(body)), int64(hlen), make(chan struct{}), nil
	r.hdr = nil
	if hlen <= maxHeaderCache {
		r.hdr = bytes.Clone(body[:hlen])
	}
	key := user + "\x00" + CanonicalMailbox(name)
	s.mu.Lock()
	q := s.queues[key]
	if q == nil {
		q = &mboxQueue{}
		s.queues[key] = q
	}
	q.pending = append(q.pending, r)
	lead := !q.running
	q.running = true
	s.mu.Unlock()
	if lead {
		// This caller commits batches until the queue is empty. Its own
		// deadline does not bound the others' messages: each batch gets
		// its own.
		for {
			s.mu.Lock()
			batch := q.pending[:min(len(q.pending), maxIndexBatch)]
			q.pending = q.pending[len(batch):]
			if len(batch) == 0 {
				q.running = false
				delete(s.queues, key)
				s.mu.Unlock()
				break
			}
			s.mu.Unlock()
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.batchTimeout)
			s.indexBatch(bctx, user, name, batch)
			cancel()
		}
	}
	// A waiter does not give up on its own deadline: the batch it is in may
	// commit, and the caller must know before it decides about the object.
	<-r.done
	return r.err
}

// indexBatch commits batch and closes every request's done.
func (s *Store) indexBatch(ctx context.Context, user, name string, batch []*indexReq) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	err := s.commitBatch(ctx, user, name, batch)
	if err != nil && len(batch) > 1 && certainlyNotIndexed(err) && !errors.Is(err, ErrNoMailbox) && !errors.Is(err, ErrBusy) {
		// One message (an upload whose lease ran out) may have failed the
		// whole batch: go one by one so the others are not refused with it.
		for _, r := range batch {
			r.err = s.commitBatch(ctx, user, name, []*indexReq{r})
		}
		return
	}
	for _, r := range batch {
		r.err = err
	}
}

// commitBatch indexes batch in one transaction, retried on conflicts, and
// fills in each request's UID.
func (s *Store) commitBatch(ctx context.Context, user, name string, batch []*indexReq) error {
	return retry(ctx, func() error {
		m, err := s.readMailbox(ctx, user, name)
		if err != nil {
			return err
		}
		t := new(client.Txn).IfVersion(mboxKey(user, m.Name), m.Version)
		m.HighestModSeq++
		var claimer *indexReq
		for _, r := range batch {
			r.recent = UIDRange{}
			if r.claim && claimer == nil {
				claimer = r
			}
			r.uid, r.uidValidity = m.UIDNext, m.UIDValidity
			m.UIDNext++
			msg := Message{UID: r.uid, Flags: r.flags, Date: r.date, Size: r.size, ModSeq: m.HighestModSeq, HeaderLen: r.hlen, obj: r.obj, headerCached: r.hdr != nil}
			m.add(msg, 1)
			t.Put(msgKey(user, m.ID, r.uid), mustJSON(msg.rec()))
			if r.hdr != nil {
				t.Put(hdrKey(user, m.ID, r.uid), r.hdr)
			}
			t.CommitObjectAs(r.obj, r.up)
		}
		if claimer != nil && m.FirstRecent < m.UIDNext {
			// Everything unclaimed, this batch's messages included, is
			// recent for the first request that has the mailbox selected.
			claimer.recent = UIDRange{From: m.FirstRecent, To: m.UIDNext}
			m.FirstRecent = m.UIDNext
		}
		t.Put(mboxKey(user, m.Name), mustJSON(m.rec()))
		_, err = s.c.Commit(ctx, t)
		if errors.Is(err, client.ErrOutcomeUnknown) {
			// Did it apply? The entry at the first UID names our (unique)
			// object if so; the transaction is all or nothing.
			rec, ok, rerr := s.c.Record(ctx, msgKey(user, m.ID, batch[0].uid))
			if rerr != nil {
				return err
			}
			var mr msgRec
			if ok && json.Unmarshal(rec.Value, &mr) == nil && mr.Obj == batch[0].obj {
				return nil
			}
			// Not applied yet. It may still apply (then the retry's compare
			// fails and the message would be indexed twice: delivered at
			// least once, never lost).
			return client.ErrCompareFailed
		}
		return err
	})
}

// certainlyNotIndexed reports whether err from index means the message is
// certainly not in the index.
func certainlyNotIndexed(err error) bool {
	return errors.Is(err, ErrNoMailbox) || errors.Is(err, ErrBadName) || errors.Is(err, ErrBusy) ||
		errors.Is(err, client.ErrInvalidArgument) || errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrConflict) ||
		errors.Is(err, client.ErrLeaseExpired)
}

// add counts msg into (n=1) or out of (n=-1) m's totals.
func (m *Mailbox) add(msg Message, n int) {
	d := uint32(n)
	m.Messages += d
	m.Size += int64(n) * msg.Size
	if !msg.Has(`\Seen`) {
		m.Unseen += d
	}
	if msg.Has(`\Deleted`) {
		m.Deleted += d
	}
}

// Recipient is one user a delivery goes to.
type Recipient struct {
	User    string
	Mailbox string // "" for INBOX
}

// Deliver stores body once and indexes it in each recipient's mailbox;
// errs[i] is recipient i's outcome (nil: delivered and durable). The
// bytes are uploaded once; the other recipients' objects are links. body
// may be kept by the body cache: the caller must not modify it afterwards.
func (s *Store) Deliver(ctx context.Context, rcpts []Recipient, body []byte, date time.Time) []error {
	errs := make([]error, len(rcpts))
	if int64(len(body)) > s.maxSize {
		for i := range errs {
			errs[i] = fmt.Errorf("%d bytes, limit %d: %w", len(body), s.maxSize, ErrTooLarge)
		}
		return errs
	}
	// One upload; each recipient's transaction commits it under its own
	// key (one more reference to the same bytes). Recipients are indexed
	// side by side: a message for 50 users takes about as long as for one.
	var shared *client.Upload
	var sharedErr error
	var once sync.Once
	upload := func(key string) (*client.Upload, error) {
		once.Do(func() { shared, sharedErr = s.c.Upload(ctx, key, bytes.NewReader(body), nil) })
		return shared, sharedErr
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, r := range rcpts {
		name := r.Mailbox
		if name == "" {
			name = Inbox
		}
		if !ValidUser(r.User) || !ValidMailbox(CanonicalMailbox(name)) {
			errs[i] = fmt.Errorf("deliver to %q of %q: %w", name, r.User, ErrBadName)
			continue
		}
		obj := newObjKey(r.User)
		up, err := upload(obj)
		if err != nil {
			errs[i] = fmt.Errorf("store message: %w", err)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = s.indexMessage(ctx, r.User, name, &indexReq{obj: obj, up: up, date: date}, body)
		})
	}
	wg.Wait()
	return errs
}

// FlagOp is how StoreFlags changes flags.
type FlagOp int

const (
	FlagsAdd FlagOp = iota
	FlagsRemove
	FlagsSet
)

// Change is the mailbox version a change read and the one it wrote (the
// same when nothing changed), and the mailbox as written. A reader that
// had seen From and applies the change's results itself is up to date at
// To without reading again.
type Change struct {
	From, To uint64
	After    Mailbox
}

// Known is a caller's picture of a mailbox: its record as of
// Mailbox.Version and its messages at that version. A change is tried
// against it first, saving the reads; if the mailbox has moved on, the
// compare fails and the change reads it afresh.
type Known struct {
	Mailbox  Mailbox
	Messages map[uint32]Message
}

func (k *Known) pick(sel Selection) []Message {
	var out []Message
	if sel.all {
		for _, m := range k.Messages {
			out = append(out, m)
		}
		slices.SortFunc(out, func(a, b Message) int { return int(a.UID) - int(b.UID) })
		return out
	}
	for _, uid := range sel.uids {
		if m, ok := k.Messages[uid]; ok {
			out = append(out, m)
		}
	}
	return out
}

// StoreFlags changes the flags of the messages of mailbox m whose UIDs
// match (and that still exist), and returns them as they are after.
// Messages whose flags do not change keep their MODSEQ.
//
// known, if not nil, is tried first (see Known).
func (s *Store) StoreFlags(ctx context.Context, user, name string, sel Selection, op FlagOp, flags []string, known *Known) ([]Message, Change, error) {
	flags, err := normFlags(flags)
	if err != nil {
		return nil, Change{}, err
	}
	var out []Message
	var ch Change
	err = retry(ctx, func() error {
		out = out[:0]
		var m Mailbox
		var msgs []Message
		if known != nil && known.Mailbox.Name == CanonicalMailbox(name) {
			m, msgs = known.Mailbox, known.pick(sel)
			known = nil // once: a failed compare reads afresh
		} else {
			var err error
			if m, err = s.readMailbox(ctx, user, name); err != nil {
				return err
			}
			if msgs, err = s.messagesOf(ctx, user, m, sel); err != nil {
				return err
			}
		}
		ch = Change{From: m.Version, To: m.Version, After: m}
		m.HighestModSeq++
		t := new(client.Txn).IfVersion(mboxKey(user, m.Name), m.Version)
		changed := 0
		for _, msg := range msgs {
			nf := applyFlags(msg.Flags, op, flags)
			if !slices.Equal(nf, msg.Flags) {
				m.add(msg, -1)
				msg.Flags = nf
				msg.ModSeq = m.HighestModSeq
				m.add(msg, 1)
				t.Put(msgKey(user, m.ID, msg.UID), mustJSON(msg.rec()))
				changed++
			}
			out = append(out, msg)
			if t.Len() >= 2000 {
				return fmt.Errorf("STORE on more than 2000 messages at once: %w", client.ErrInvalidArgument)
			}
		}
		if changed == 0 {
			return nil
		}
		t.Put(mboxKey(user, m.Name), mustJSON(m.rec()))
		to, err := s.c.Commit(ctx, t)
		if err == nil {
			m.Version = to
			ch.To, ch.After = to, m
		}
		return err
	})
	return out, ch, err
}

func applyFlags(cur []string, op FlagOp, flags []string) []string {
	var out []string
	switch op {
	case FlagsSet:
		out = slices.Clone(flags)
	case FlagsAdd:
		out = slices.Clone(cur)
		for _, f := range flags {
			if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, f) }) {
				out = append(out, f)
			}
		}
	case FlagsRemove:
		for _, f := range cur {
			if !slices.ContainsFunc(flags, func(o string) bool { return strings.EqualFold(o, f) }) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Expunge removes the messages of mailbox name that carry \Deleted and
// whose UIDs match, and returns their UIDs.
func (s *Store) Expunge(ctx context.Context, user, name string, sel Selection) ([]uint32, error) {
	var gone []uint32
	for {
		var batch []uint32
		more := false
		err := retry(ctx, func() error {
			batch = batch[:0]
			more = false
			m, err := s.readMailbox(ctx, user, name)
			if err != nil {
				return err
			}
			msgs, err := s.messagesOf(ctx, user, m, sel)
			if err != nil {
				return err
			}
			m.HighestModSeq++
			t := new(client.Txn).IfVersion(mboxKey(user, m.Name), m.Version)
			for _, msg := range msgs {
				if !msg.Has(`\Deleted`) {
					continue
				}
				if len(batch) == 1000 {
					more = true
					break
				}
				m.add(msg, -1)
				t.Delete(msgKey(user, m.ID, msg.UID)).DeleteObject(msg.obj)
				if msg.headerCached {
					t.Delete(hdrKey(user, m.ID, msg.UID))
				}
				batch = append(batch, msg.UID)
			}
			if len(batch) == 0 {
				return nil
			}
			t.Put(mboxKey(user, m.Name), mustJSON(m.rec()))
			_, err = s.c.Commit(ctx, t)
			return err
		})
		if err != nil {
			return gone, err
		}
		gone = append(gone, batch...)
		if !more {
			return gone, nil
		}
	}
}

// Copy copies the messages of src whose UIDs match to dst (no bytes move:
// each copy's object is a link), and with move removes them from src in
// the same step. It returns the source UIDs and the UIDs they got in dst,
// pairwise, and dst's UIDVALIDITY.
func (s *Store) Copy(ctx context.Context, user, src, dst string, sel Selection, move bool) (srcUIDs, dstUIDs []uint32, uidValidity uint32, err error) {
	src, dst = CanonicalMailbox(src), CanonicalMailbox(dst)
	same := src == dst // allowed: a COPY adds copies, a MOVE gives new UIDs
	err = retry(ctx, func() error {
		srcUIDs, dstUIDs = srcUIDs[:0], dstUIDs[:0]
		sm, err := s.readMailbox(ctx, user, src)
		if err != nil {
			return err
		}
		dm := &sm // COPY into the selected mailbox itself is allowed
		if !same {
			d, err := s.readMailbox(ctx, user, dst)
			if err != nil {
				return err
			}
			dm = &d
		}
		msgs, err := s.messagesOf(ctx, user, sm, sel)
		if err != nil {
			return err
		}
		var headers map[uint32][]byte
		if len(msgs) > 8 {
			if headers, err = s.Headers(ctx, user, sm, msgs); err != nil {
				return err
			}
		}
		t := new(client.Txn).IfVersion(mboxKey(user, sm.Name), sm.Version)
		if !same {
			t.IfVersion(mboxKey(user, dm.Name), dm.Version)
			sm.HighestModSeq++
		}
		dm.HighestModSeq++
		size := 0
		for _, msg := range msgs {
			if t.Len() > 3000 || size > 2<<20 {
				return fmt.Errorf("COPY of more than %d messages at once: %w", len(srcUIDs), client.ErrInvalidArgument)
			}
			c := msg
			c.UID = dm.UIDNext
			dm.UIDNext++
			c.ModSeq = dm.HighestModSeq
			if !move {
				// A copy is a new object linked to the same bytes; a moved
				// message keeps its object (keys are per user, not per
				// mailbox).
				c.obj = newObjKey(user)
				t.LinkObject(c.obj, msg.obj)
			}
			if msg.headerCached {
				h, ok := headers[msg.UID]
				if headers == nil {
					r, found, err := s.c.Record(ctx, hdrKey(user, sm.ID, msg.UID))
					if err != nil {
						return err
					}
					h, ok = r.Value, found
				}
				if ok {
					t.Put(hdrKey(user, dm.ID, c.UID), h)
					size += len(h)
				} else {
					c.headerCached = false
				}
			}
			dm.add(c, 1)
			t.Put(msgKey(user, dm.ID, c.UID), mustJSON(c.rec()))
			if move {
				sm.add(msg, -1)
				t.Delete(msgKey(user, sm.ID, msg.UID))
				if msg.headerCached {
					t.Delete(hdrKey(user, sm.ID, msg.UID))
				}
			}
			srcUIDs = append(srcUIDs, msg.UID)
			dstUIDs = append(dstUIDs, c.UID)
		}
		uidValidity = dm.UIDValidity
		if len(srcUIDs) == 0 {
			return nil
		}
		t.Put(mboxKey(user, dm.Name), mustJSON(dm.rec()))
		if move && !same {
			t.Put(mboxKey(user, sm.Name), mustJSON(sm.rec()))
		}
		_, err = s.c.Commit(ctx, t)
		return err
	})
	return srcUIDs, dstUIDs, uidValidity, err
}

// memHeader returns msg's header block from memory: the body cache holds
// header blocks under their index keys, and whole bodies (whose first
// HeaderLen bytes are the block). Both are immutable: a header record's
// key names one message of one mailbox id, never reused, and is never
// rewritten. The slice must not be modified.
func (s *Store) memHeader(user string, m Mailbox, msg Message) ([]byte, bool) {
	if h, ok := s.bodies.get(headerCacheKey(user, m.ID, msg.UID)); ok {
		return h, true
	}
	if b, ok := s.bodies.peek(msg.obj); ok && int64(len(b)) >= msg.HeaderLen {
		return b[:msg.HeaderLen], true
	}
	return nil, false
}

func headerCacheKey(user string, id uint64, uid uint32) string { return "hdr:" + hdrKey(user, id, uid) }

// Header returns msg's header block (from memory, or the index when
// cached there, or the message's first bytes).
func (s *Store) Header(ctx context.Context, user string, m Mailbox, msg Message) ([]byte, error) {
	if h, ok := s.memHeader(user, m, msg); ok {
		return h, nil
	}
	if msg.headerCached {
		r, ok, err := s.c.Record(ctx, hdrKey(user, m.ID, msg.UID))
		if err != nil {
			return nil, err
		}
		if ok {
			s.bodies.add(headerCacheKey(user, m.ID, msg.UID), r.Value)
			return r.Value, nil
		}
	}
	return s.Range(ctx, msg, 0, msg.HeaderLen)
}

// Headers returns the header blocks of msgs (messages of m), by UID: from
// memory when every one is there, else in a few ranged reads of the index
// (for searches over a whole mailbox). Messages whose header is in
// neither are missing from the map.
func (s *Store) Headers(ctx context.Context, user string, m Mailbox, msgs []Message) (map[uint32][]byte, error) {
	out := make(map[uint32][]byte, len(msgs))
	complete := true
	for _, msg := range msgs {
		if h, ok := s.memHeader(user, m, msg); ok {
			out[msg.UID] = h
		} else if msg.headerCached {
			complete = false
		}
	}
	if complete {
		return out, nil
	}
	prefix := fmt.Sprintf("%shdr/%016x/", userPrefix(user), m.ID)
	err := s.eachRecord(ctx, prefix, "", 10000, func(r client.Record) error {
		uid := uidOfKey(r.Key)
		out[uid] = r.Value
		s.bodies.add(headerCacheKey(user, m.ID, uid), r.Value)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read headers of %q: %w", m.Name, err)
	}
	return out, nil
}

// Body returns msg's bytes, verified. The slice may be shared with the
// body cache: it must not be modified.
func (s *Store) Body(ctx context.Context, msg Message) ([]byte, error) {
	if b, ok := s.bodies.get(msg.obj); ok {
		return b, nil
	}
	r, err := s.c.Get(ctx, msg.obj)
	if err != nil {
		return nil, fmt.Errorf("read message %d: %w", msg.UID, err)
	}
	defer r.Close()
	b := make([]byte, 0, msg.Size)
	buf := bytes.NewBuffer(b)
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("read message %d: %w", msg.UID, err)
	}
	s.bodies.add(msg.obj, buf.Bytes())
	return buf.Bytes(), nil
}

// Range returns length bytes of msg from off (a partial fetch).
func (s *Store) Range(ctx context.Context, msg Message, off, length int64) ([]byte, error) {
	if length == 0 || off >= msg.Size {
		return nil, nil
	}
	if b, ok := s.bodies.get(msg.obj); ok {
		return b[off:min(off+length, int64(len(b)))], nil
	}
	b, err := s.c.GetRange(ctx, msg.obj, off, length)
	if err != nil {
		return nil, fmt.Errorf("read message %d: %w", msg.UID, err)
	}
	return b, nil
}
