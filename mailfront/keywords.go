package mailfront

import (
	"maps"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/raisfs/raisfs/mailstore"
)

// Keywords (RFC 3501 7.2.6): the FLAGS response lists the flags a client
// may see in the mailbox, and a client (imaptest checks it) expects every
// keyword in a FETCH FLAGS to have been listed first. A keyword set through
// another session, or a new one this session sets, is announced with a
// new FLAGS response before the first FETCH that carries it.

// systemFlags are the flags every mailbox has.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// mailboxFlags is the FLAGS response: the system flags and the keywords
// the client has been told of.
func (v *view) mailboxFlags() []imap.Flag {
	out := slices.Clone(systemFlags)
	for _, k := range slices.Sorted(maps.Keys(v.keywords)) {
		out = append(out, imap.Flag(k))
	}
	return out
}

// newKeywords adds msg's keywords to those the client is told of and
// reports whether there were new ones.
func (v *view) newKeywords(msg mailstore.Message) bool {
	added := false
	for _, f := range msg.Flags {
		if !strings.HasPrefix(f, `\`) && !v.keywords[f] {
			v.keywords[f] = true
			added = true
		}
	}
	return added
}

// tellKeywords sends FLAGS when msgs carry keywords the client has not
// been told of, before the command writes them in FETCH responses.
func (s *session) tellKeywords(msgs []mailstore.Message) error {
	v := s.sel
	added := false
	for _, m := range msgs {
		added = v.newKeywords(m) || added
	}
	if !added || s.updates == nil {
		return nil
	}
	return s.updates.WriteMailboxFlags(v.mailboxFlags())
}
