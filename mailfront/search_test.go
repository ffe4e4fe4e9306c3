package mailfront

import (
	"bufio"
	"bytes"
	"testing"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// cannotMatch may only rule out what the parsed header search would not
// match: checked against it for headers that fold, encode words, mix
// case and carry 8-bit bytes, and address fields as read.
func TestCannotMatch_NeverRulesOutAMatch(t *testing.T) {
	headers := []string{
		"Subject: Quarterly report\r\nFrom: a@example.org\r\n\r\n",
		"Subject: a folded\r\n subject line\r\nFrom: b@example.org\r\n\r\n",
		"Subject: =?utf-8?q?Caf=C3=A9_menu?=\r\n\r\n",
		"Subject: MIXED Case\r\nX-Tag: Zürich\r\n\r\n",
		"Subject: 8-bit \xe9t\xe9\r\n\r\n",
		"Subject:no space\r\n\r\n",
		"From: <ann (work)@ (main) example.org>\r\nTo: \"Doe, John\" <j@x.org>\r\n\r\n",
		"From: ann@example.org (Ann Smith)\r\nTo: team: c@y.org;\r\n\r\n",
	}
	patterns := []string{"report", "REPORT", "folded subject", "subject line", "café", "Caf", "mixed case", "case",
		"zürich", "ZÜRICH", "\xe9t\xe9", "no space", "space", "absent", "b@example", "line", "folded  subject",
		"quarterly absent", " report ", "a folded subject line", "ann@example.org", "Ann Smith <ann@example.org>",
		"n@exam", "doe, john <j@x.org>", "team", "absent@example.org"}
	ruledOut := 0
	for _, h := range headers {
		th, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader([]byte(h))))
		hdr := &mail.Header{Header: gomessage.Header{Header: th}}
		for _, key := range []string{"Subject", "From", "To", "X-Tag"} {
			for _, p := range patterns {
				if !cannotMatch([]byte(h), p, addressField(key)) {
					continue
				}
				ruledOut++
				if matchFields(hdr.FieldsByKey(key), p) || addressField(key) && matchAddresses(hdr.FieldsByKey(key), p) {
					t.Errorf("header %q, %s contains %q: ruled out without parsing", h, key, p)
				}
			}
		}
	}
	if ruledOut == 0 {
		t.Fatal("nothing was ruled out")
	}
	// And it does rule out the plain miss.
	if !cannotMatch([]byte("Subject: hello\r\n\r\n"), "absent", false) || !cannotMatch([]byte("Subject: bench 17\r\n\r\n"), "bench 1234", false) ||
		!cannotMatch([]byte("From: a@example.org\r\n\r\n"), "b@example.org", true) {
		t.Error("a plain miss was not ruled out")
	}
}
