package mailfront

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestEnvelopeAddresses(t *testing.T) {
	a := func(name, mailbox, host string) imap.Address {
		return imap.Address{Name: name, Mailbox: mailbox, Host: host}
	}
	start := func(group string) imap.Address { return imap.Address{Mailbox: group} }
	end := imap.Address{}
	for _, c := range []struct {
		field string
		want  []imap.Address
	}{
		{"", nil},
		{"   ", nil},
		{"user@example.org", []imap.Address{a("", "user", "example.org")}},
		{"Real Name <user@example.org>", []imap.Address{a("Real Name", "user", "example.org")}},
		{`"Doe, John \"JD\"" <john@example.org>, bob@example.net`, []imap.Address{a(`Doe, John "JD"`, "john", "example.org"), a("", "bob", "example.net")}},
		// The comment names a mailbox that has no display name.
		{"user@example.org (Real Name)", []imap.Address{a("Real Name", "user", "example.org")}},
		{"<user@example.org> (Real (nested) Name)", []imap.Address{a("Real (nested) Name", "user", "example.org")}},
		{"Display <user@example.org> (comment)", []imap.Address{a("Display", "user", "example.org")}},
		// Groups: start marker, members, end marker.
		{"undisclosed-recipients:;", []imap.Address{start("undisclosed-recipients"), end}},
		{"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;", []imap.Address{
			start("group"), a("", "g1", "d1.org"), a("", "g2", "d2.org"), end, start("group2"), a("", "g3", "d3.org"), end}},
		{"Team: A <a@x.org>, b@x.org; c@y.org", []imap.Address{start("Team"), a("A", "a", "x.org"), a("", "b", "x.org"), end, a("", "c", "y.org")}},
		{"open group: a@x.org", []imap.Address{start("open group"), a("", "a", "x.org"), end}},
		// Obsolete and odd forms.
		{"<@relay1,@relay2:user@example.org>", []imap.Address{a("", "user", "example.org")}},
		{"root", []imap.Address{a("", "root", "MISSING_DOMAIN")}},
		{"Name <root>", []imap.Address{a("Name", "root", "MISSING_DOMAIN")}},
		{"@example.org", []imap.Address{a("", "MISSING_MAILBOX", "example.org")}},
		{`"john doe"@example.org`, []imap.Address{a("", "john doe", "example.org")}},
		{"user@[192.0.2.1]", []imap.Address{a("", "user", "[192.0.2.1]")}},
		{"=?UTF-8?Q?J=C3=B6rg?= <j@example.org>", []imap.Address{a("=?UTF-8?Q?J=C3=B6rg?=", "j", "example.org")}},
		{"a@x.org,,  , b@y.org", []imap.Address{a("", "a", "x.org"), a("", "b", "y.org")}},
		{"folded\r\n name <f@x.org>", []imap.Address{a("folded name", "f", "x.org")}},
		// Broken input: whatever can be read, nothing invented, no panic.
		{"<unterminated@x.org", []imap.Address{a("", "unterminated", "x.org")}},
		{`"unterminated <a@b>`, nil},
		{"a@b.org>, c@d.org", []imap.Address{a("", "a", "b.org"), a("", "c", "d.org")}},
		{"(only a comment)", nil},
		{"@", nil},
		{"<>", nil},
	} {
		got := envelopeAddresses(c.field)
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", c.want) {
			t.Errorf("%q:\n got  %q\n want %q", c.field, got, c.want)
		}
	}
}

func FuzzEnvelopeAddresses(f *testing.F) {
	for _, s := range []string{"a <b@c>", "g: a@b, (c) d@e;", `"x\" <y@z>`, "<@r:u@d>", "((("} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		envelopeAddresses(s) // must not panic or hang
	})
}
