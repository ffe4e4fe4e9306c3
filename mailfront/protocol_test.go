package mailfront_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/raisfs/raisfs/internal/testcluster"
)

// rawLoggedIn starts a cluster and a front end and returns a raw session
// logged in as alice.
func rawLoggedIn(t *testing.T) (*front, *rawSession) {
	t.Helper()
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 1<<20)
	a := dialRaw(t, f.imap)
	a.cmd("LOGIN alice pw-a")
	return f, a
}

// appendRaw appends body to mbox with a synchronising literal and returns
// the answer.
func (r *rawSession) appendRaw(mbox, body string) string {
	r.t.Helper()
	r.tag++
	tag := fmt.Sprintf("t%d", r.tag)
	fmt.Fprintf(r.c, "%s APPEND %s {%d}\r\n", tag, mbox, len(body))
	if l, err := r.rd.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+") {
		r.t.Fatalf("APPEND: no continuation: %q, %v", l, err)
	}
	fmt.Fprintf(r.c, "%s\r\n", body)
	var out strings.Builder
	for {
		l, err := r.rd.ReadString('\n')
		if err != nil {
			r.t.Fatalf("APPEND: %v (read %q)", err, out.String())
		}
		out.WriteString(l)
		if strings.HasPrefix(l, tag+" ") {
			return out.String()
		}
	}
}

// recentLine returns the n of "* n RECENT" in out, -1 if there is none.
func recentLine(out string) int {
	m := regexp.MustCompile(`(?m)^\* (\d+) RECENT\r$`).FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

// recentUIDs returns the UIDs a FETCH answer gives \Recent.
func recentUIDs(out string) string {
	var uids []string
	for _, l := range strings.Split(out, "\r\n") {
		if m := regexp.MustCompile(`UID (\d+)`).FindStringSubmatch(l); m != nil && strings.Contains(l, `\Recent`) {
			uids = append(uids, m[1])
		}
	}
	return strings.Join(uids, ",")
}

// \Recent (RFC 3501): a message is recent in exactly one session, the
// first told of it, whichever front end serves it: at SELECT, when new
// mail is reported, and for a session's own APPEND to its selected
// mailbox. EXAMINE sees what is unclaimed without claiming it; STATUS
// counts what is unclaimed; SEARCH RECENT, NEW and OLD follow; a session
// that enabled IMAP4rev2 is told nothing of it.
func TestIMAP_RecentIsOneSessionsOwn(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f1 := startFront(t, cl.MasterAddrs(), 1<<20)
	f2 := startFront(t, cl.MasterAddrs(), 1<<20)
	msg := func(i int) []byte { return fmt.Appendf(nil, "Subject: m%d\r\n\r\nbody %d\r\n", i, i) }
	for i := 1; i <= 2; i++ {
		if _, err := deliver(t, f1.lmtp, msg(i), "alice@localhost"); err != nil {
			t.Fatal(err)
		}
	}
	a, b, other := dialRaw(t, f1.imap), dialRaw(t, f2.imap), dialRaw(t, f2.imap)
	for _, s := range []*rawSession{a, b, other} {
		s.cmd("LOGIN alice pw-a")
	}
	status := func(want string) {
		t.Helper()
		if out := other.cmd("STATUS INBOX (MESSAGES RECENT)"); !strings.Contains(out, want) {
			t.Errorf("STATUS: want %q in\n%s", want, out)
		}
	}
	status("(MESSAGES 2 RECENT 2)")
	if out := other.cmd("EXAMINE INBOX"); recentLine(out) != 2 {
		t.Errorf("EXAMINE before any SELECT: want 2 RECENT:\n%s", out)
	}
	other.cmd("CLOSE")
	status("RECENT 2)") // EXAMINE claimed nothing

	if out := a.cmd("SELECT INBOX"); recentLine(out) != 2 {
		t.Errorf("first SELECT: want 2 RECENT:\n%s", out)
	}
	if out := b.cmd("SELECT INBOX"); recentLine(out) != 0 {
		t.Errorf("second SELECT (other front end): want 0 RECENT:\n%s", out)
	}
	status("RECENT 0)")
	if got := recentUIDs(a.cmd("FETCH 1:* (UID FLAGS)")); got != "1,2" {
		t.Errorf("first session's \\Recent UIDs = %q, want 1,2", got)
	}
	if got := recentUIDs(b.cmd("FETCH 1:* (UID FLAGS)")); got != "" {
		t.Errorf("second session's \\Recent UIDs = %q, want none", got)
	}

	// New mail: the first session told of it has it recent.
	if _, err := deliver(t, f2.lmtp, msg(3), "alice@localhost"); err != nil {
		t.Fatal(err)
	}
	status("RECENT 1)")
	if out := b.cmd("NOOP"); !strings.Contains(out, "* 3 EXISTS") || recentLine(out) != 1 {
		t.Errorf("NOOP on the second session after a delivery: want 3 EXISTS, 1 RECENT:\n%s", out)
	}
	if out := a.cmd("NOOP"); !strings.Contains(out, "* 3 EXISTS") || recentLine(out) != 2 {
		t.Errorf("NOOP on the first session after it: want 3 EXISTS, 2 RECENT:\n%s", out)
	}
	status("RECENT 0)")

	// A session's own APPEND to its selected mailbox is recent for it,
	// claimed in the append's commit.
	if out := a.appendRaw("INBOX", string(msg(4))); !strings.Contains(out, "OK") || recentLine(out) != 3 {
		t.Errorf("APPEND to the selected mailbox: want OK and 3 RECENT:\n%s", out)
	}
	if out := b.cmd("NOOP"); !strings.Contains(out, "* 4 EXISTS") || recentLine(out) != 1 {
		t.Errorf("the other session after the APPEND: want 4 EXISTS, still 1 RECENT:\n%s", out)
	}
	if got := recentUIDs(a.cmd("UID FETCH 1:* FLAGS")); got != "1,2,4" {
		t.Errorf("first session's \\Recent UIDs = %q, want 1,2,4", got)
	}
	if got := recentUIDs(b.cmd("UID FETCH 1:* FLAGS")); got != "3" {
		t.Errorf("second session's \\Recent UIDs = %q, want 3", got)
	}
	// STORE FLAGS keeps \Recent in its answer; SEARCH RECENT/NEW/OLD.
	if out := a.cmd(`STORE 1 FLAGS (\Seen)`); !strings.Contains(out, `\Recent`) {
		t.Errorf("STORE answer lost \\Recent:\n%s", out)
	}
	for q, want := range map[string]string{"UID SEARCH RECENT": "* SEARCH 1 2 4", "UID SEARCH NEW": "* SEARCH 2 4", "UID SEARCH OLD": "* SEARCH 3"} {
		if out := a.cmd(q); !strings.Contains(out, want+"\r\n") {
			t.Errorf("%s: want %q:\n%s", q, want, out)
		}
	}

	// IMAP4rev2 has no \Recent: not told, and claims nothing.
	if _, err := deliver(t, f1.lmtp, msg(5), "alice@localhost"); err != nil {
		t.Fatal(err)
	}
	rev2 := dialRaw(t, f1.imap)
	rev2.cmd("LOGIN alice pw-a")
	rev2.cmd("ENABLE IMAP4rev2")
	if out := rev2.cmd("SELECT INBOX"); recentLine(out) != -1 || strings.Contains(rev2.cmd("FETCH 1:* FLAGS"), `\Recent`) {
		t.Errorf("an IMAP4rev2 session was told of \\Recent:\n%s", out)
	}
	status("(MESSAGES 5 RECENT 1)")
}

// An EXPUNGE of a recent message is followed by the new RECENT count.
func TestIMAP_RecentCountAfterExpunge(t *testing.T) {
	_, a := rawLoggedIn(t)
	for i := range 3 {
		a.appendRaw("INBOX", fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))
	}
	if out := a.cmd("SELECT INBOX"); recentLine(out) != 3 {
		t.Fatalf("SELECT: want 3 RECENT:\n%s", out)
	}
	a.cmd(`STORE 2 +FLAGS.SILENT (\Deleted)`)
	if out := a.cmd("EXPUNGE"); !strings.Contains(out, "* 2 EXPUNGE") || recentLine(out) != 2 {
		t.Errorf("EXPUNGE: want 2 EXPUNGE then 2 RECENT:\n%s", out)
	}
	if out := a.cmd("NOOP"); recentLine(out) != -1 {
		t.Errorf("NOOP with nothing new repeated RECENT:\n%s", out)
	}
}

// CLOSE (and EXPUNGE) in a mailbox opened with EXAMINE succeed and remove
// nothing (RFC 3501 6.4.2).
func TestIMAP_CloseAfterExamineRemovesNothing(t *testing.T) {
	_, a := rawLoggedIn(t)
	a.appendRaw(`INBOX (\Deleted)`, "Subject: x\r\n\r\nbody\r\n")
	a.cmd("EXAMINE INBOX")
	for _, c := range []string{"EXPUNGE", "CLOSE"} {
		if out := a.cmd(c); !strings.Contains(out, " OK") || strings.Contains(out, "EXPUNGE\r\n") && strings.HasPrefix(out, "* ") {
			t.Errorf("%s after EXAMINE: want OK and nothing expunged:\n%s", c, out)
		}
	}
	if out := a.cmd("STATUS INBOX (MESSAGES)"); !strings.Contains(out, "(MESSAGES 1)") {
		t.Errorf("after CLOSE of an EXAMINEd mailbox:\n%s", out)
	}
	if out := a.cmd("FETCH 1 FLAGS"); !strings.Contains(out, " BAD") {
		t.Errorf("CLOSE did not leave the selected state:\n%s", out)
	}
}

// Subscriptions as RFC 3501 has them: CREATE subscribes nothing, LSUB
// with "%" shows the level the pattern reaches above a subscribed mailbox
// as \Noselect when it is not subscribed itself, and a subscription
// outlives its mailbox.
func TestIMAP_Subscriptions(t *testing.T) {
	_, a := rawLoggedIn(t)
	for _, m := range []string{"Box/", "Box/a", "Box/b/c"} {
		if out := a.cmd("CREATE " + m); !strings.Contains(out, " OK") {
			t.Fatalf("CREATE %s:\n%s", m, out)
		}
	}
	lines := func(out, kind string) []string {
		var got []string
		for _, l := range strings.Split(out, "\r\n") {
			if strings.HasPrefix(l, "* "+kind+" ") {
				got = append(got, l)
			}
		}
		return got
	}
	check := func(cmd, kind string, want ...string) {
		t.Helper()
		got := lines(a.cmd(cmd), kind)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\n got  %q\n want %q", cmd, got, want)
		}
	}
	check(`LSUB "" "*"`, "LSUB", `* LSUB (\Subscribed \HasNoChildren) "/" INBOX`)
	a.cmd("SUBSCRIBE Box/a")
	a.cmd("SUBSCRIBE Box/b/c")
	check(`LSUB "" "Box/%"`, "LSUB", `* LSUB (\Subscribed \HasNoChildren) "/" "Box/a"`, `* LSUB (\Noselect) "/" "Box/b"`)
	check(`LSUB "" "Box/*"`, "LSUB", `* LSUB (\Subscribed \HasNoChildren) "/" "Box/a"`, `* LSUB (\Subscribed \HasNoChildren) "/" "Box/b/c"`)
	check(`LIST (SUBSCRIBED RECURSIVEMATCH) "" "Box/%"`, "LIST",
		`* LIST (\Subscribed \HasNoChildren) "/" "Box/a"`, `* LIST (\HasChildren) "/" "Box/b" (CHILDINFO ("SUBSCRIBED"))`)
	a.cmd("UNSUBSCRIBE Box/b/c")
	check(`LSUB "" "Box/%"`, "LSUB", `* LSUB (\Subscribed \HasNoChildren) "/" "Box/a"`)

	// A subscription outlives its mailbox (RFC 3501 6.3.6) until
	// UNSUBSCRIBE; RENAME takes it along.
	a.cmd("SUBSCRIBE Box/b/c")
	if out := a.cmd("DELETE Box/a"); !strings.Contains(out, " OK") {
		t.Fatalf("DELETE:\n%s", out)
	}
	check(`LIST (SUBSCRIBED) "" "Box/*"`, "LIST", `* LIST (\NonExistent \Subscribed \HasNoChildren) "/" "Box/a"`, `* LIST (\Subscribed \HasNoChildren) "/" "Box/b/c"`)
	check(`LIST "" "Box/*"`, "LIST", `* LIST (\HasChildren) "/" "Box/b"`, `* LIST (\HasNoChildren) "/" "Box/b/c"`)
	a.cmd("RENAME Box/b Box/z")
	check(`LSUB "" "Box/*"`, "LSUB", `* LSUB (\NonExistent \Subscribed \HasNoChildren) "/" "Box/a"`, `* LSUB (\Subscribed \HasNoChildren) "/" "Box/z/c"`)
	if out := a.cmd("UNSUBSCRIBE Box/a"); !strings.Contains(out, " OK") {
		t.Errorf("UNSUBSCRIBE of a deleted mailbox:\n%s", out)
	}
	check(`LSUB "" "Box/*"`, "LSUB", `* LSUB (\Subscribed \HasNoChildren) "/" "Box/z/c"`)
	if out := a.cmd("SUBSCRIBE Box/nope"); !strings.Contains(out, " NO") {
		t.Errorf("SUBSCRIBE to a mailbox that never existed:\n%s", out)
	}
}

// SEARCH FROM/TO/CC/BCC match the addresses as read, not only the bytes of
// the field: a comment inside an address, a display name given as a
// comment, group names and their members.
func TestIMAP_SearchAddresses(t *testing.T) {
	_, a := rawLoggedIn(t)
	for _, h := range []string{
		"From: ann@example.org\r\nTo: bo@example.net",
		"From: Ann Smith <ann@example.org>\r\nTo: Bo Jones <bo@example.net>",
		"From: <ann (work)@ (main) example.org>\r\nTo: <bo@example.net>",
		"From: ann@example.org (Ann Smith)\r\nCc: bo@example.net (Bo Jones)",
		"To: team: carl@example.com, dora@example.com;,\r\n  crew: ed@example.com;",
	} {
		a.appendRaw("INBOX", h+"\r\nSubject: s\r\n\r\nbody\r\n")
	}
	a.cmd("SELECT INBOX")
	for q, want := range map[string]string{
		"SEARCH FROM ann@example.org":    "1 2 3 4",
		"SEARCH FROM smith":              "2 4",
		"SEARCH FROM n@exam":             "1 2 3 4",
		"SEARCH TO bo@example.net":       "1 2 3",
		"SEARCH CC jones":                "4",
		"SEARCH TO team":                 "5",
		"SEARCH TO dora@example.com":     "5",
		"SEARCH TO ed@example":           "5",
		`SEARCH HEADER CC ""`:            "4",
		"SEARCH FROM nobody@example.org": "",
	} {
		out := a.cmd(q)
		if !strings.Contains(out, strings.TrimSpace("* SEARCH "+want)+"\r\n") {
			t.Errorf("%s: want %q:\n%s", q, want, out)
		}
	}
}

// COPY into the selected mailbox reports the copies at once; MOVE into it
// gives the message a new UID: COPYUID, EXPUNGE of the old, EXISTS.
func TestIMAP_CopyAndMoveIntoTheSelectedMailbox(t *testing.T) {
	_, a := rawLoggedIn(t)
	a.appendRaw("INBOX", "Subject: one\r\n\r\nbody\r\n")
	a.cmd("SELECT INBOX")
	if out := a.cmd("COPY 1 INBOX"); !strings.Contains(out, "[COPYUID ") || !strings.Contains(out, "* 2 EXISTS") {
		t.Errorf("COPY into the selected mailbox: want COPYUID and 2 EXISTS:\n%s", out)
	}
	out := a.cmd("UID MOVE 1 INBOX")
	uv := regexp.MustCompile(`COPYUID (\d+) 1 3\]`).FindStringSubmatch(out)
	if uv == nil || !strings.Contains(out, "* 1 EXPUNGE") || !strings.Contains(out, "* 2 EXISTS") {
		t.Errorf("MOVE into the selected mailbox: want COPYUID N 1 3, 1 EXPUNGE, 2 EXISTS:\n%s", out)
	}
	if got := a.cmd("UID SEARCH ALL"); !strings.Contains(got, "* SEARCH 2 3\r\n") {
		t.Errorf("UIDs after the move:\n%s", got)
	}
	if got := a.cmd("STATUS INBOX (MESSAGES UIDNEXT)"); !strings.Contains(got, "(MESSAGES 2 UIDNEXT 4)") {
		t.Errorf("STATUS after the move:\n%s", got)
	}
}

// INTERNALDATE keeps the zone the APPEND gave, and BEFORE/ON/SINCE compare
// the date in it; SENTBEFORE/SENTON/SENTSINCE compare the Date field's own
// date, its zone disregarded (RFC 3501 6.4.4).
func TestIMAP_DatesInTheirOwnZone(t *testing.T) {
	_, a := rawLoggedIn(t)
	// 00:30 on 25 March at +0200 is still 24 March in UTC.
	if out := a.appendRaw(`INBOX "25-Mar-2007 00:30:00 +0200"`, "Date: Sun, 25 Mar 2007 00:30:00 +0200\r\nSubject: late\r\n\r\nbody\r\n"); !strings.Contains(out, " OK") {
		t.Fatalf("APPEND: %s", out)
	}
	a.cmd("SELECT INBOX")
	if out := a.cmd("FETCH 1 INTERNALDATE"); !strings.Contains(out, `INTERNALDATE "25-Mar-2007 00:30:00 +0200"`) {
		t.Errorf("INTERNALDATE lost its zone:\n%s", out)
	}
	for q, match := range map[string]bool{
		"SEARCH ON 25-Mar-2007": true, "SEARCH ON 24-Mar-2007": false, "SEARCH BEFORE 25-Mar-2007": false, "SEARCH SINCE 25-Mar-2007": true,
		"SEARCH SENTON 25-Mar-2007": true, "SEARCH SENTON 24-Mar-2007": false, "SEARCH SENTBEFORE 25-Mar-2007": false, "SEARCH SENTSINCE 25-Mar-2007": true,
	} {
		want := "* SEARCH\r\n"
		if match {
			want = "* SEARCH 1\r\n"
		}
		if out := a.cmd(q); !strings.Contains(out, want) {
			t.Errorf("%s: want %q:\n%s", q, want, out)
		}
	}
}

// A keyword is announced in FLAGS before the first FETCH that carries it,
// whether another session set it or this one did (RFC 3501 7.2.6).
func TestIMAP_NewKeywordsAnnouncedFirst(t *testing.T) {
	f, a := rawLoggedIn(t)
	b := dialRaw(t, f.imap)
	b.cmd("LOGIN alice pw-a")
	a.appendRaw("INBOX", "Subject: k\r\n\r\nbody\r\n")
	a.cmd("SELECT INBOX")
	b.cmd("SELECT INBOX")
	// flagsThenFetch checks that out has a FLAGS response listing kw before
	// the FETCH that carries it.
	flagsThenFetch := func(what, out, kw string) {
		t.Helper()
		fl := regexp.MustCompile(`(?m)^\* FLAGS \([^)]*` + regexp.QuoteMeta(kw) + `[ )]`).FindStringIndex(out)
		fe := regexp.MustCompile(`(?m)^\* \d+ FETCH .*` + regexp.QuoteMeta(kw)).FindStringIndex(out)
		if fl == nil || (fe != nil && fe[0] < fl[0]) {
			t.Errorf("%s: want FLAGS with %s before any FETCH with it:\n%s", what, kw, out)
		}
	}
	b.cmd(`STORE 1 +FLAGS ($Work)`)
	flagsThenFetch("NOOP after another session's new keyword", a.cmd("NOOP"), "$Work")
	flagsThenFetch("STORE of a new keyword", a.cmd(`STORE 1 +FLAGS ($Mine)`), "$Mine")
	flagsThenFetch("silent STORE of a new keyword", a.cmd(`STORE 1 +FLAGS.SILENT ($Quiet)`), "$Quiet")
	b.cmd(`STORE 1 +FLAGS ($Other)`)
	flagsThenFetch("FETCH after another session's new keyword", a.cmd("FETCH 1 FLAGS"), "$Other")
	if out := a.cmd("NOOP"); strings.Contains(out, "* FLAGS") {
		t.Errorf("FLAGS repeated with nothing new:\n%s", out)
	}
}

// SEARCH BODY and TEXT look at the decoded text: a word in a base64 or
// quoted-printable part (split by a soft line break) is found, as is one
// in a plain part or, for TEXT, in a header.
func TestIMAP_SearchDecodedBodies(t *testing.T) {
	_, a := rawLoggedIn(t)
	for _, m := range []string{
		"Subject: plain\r\n\r\nfirst asdfghjkl\r\n",
		"Subject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\ncXdlcnR5dWlvcCBhbmQgbW9yZQ==\r\n", // "qwertyuiop and more"
		"Subject: qp\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nzxcv=\r\nbnm caf=C3=A9\r\n",
		"Subject: zxcvbnm in the header\r\n\r\nnothing here\r\n",
	} {
		a.appendRaw("INBOX", m)
	}
	a.cmd("SELECT INBOX")
	for q, want := range map[string]string{
		"SEARCH BODY asdfghjkl": "1", "SEARCH BODY qwertyuiop": "2", "SEARCH BODY ertyui": "2",
		"SEARCH BODY zxcvbnm": "3", "SEARCH TEXT zxcvbnm": "3 4", "SEARCH BODY nothing": "4",
	} {
		if out := a.cmd(q); !strings.Contains(out, "* SEARCH "+want+"\r\n") {
			t.Errorf("%s: want %q:\n%s", q, want, out)
		}
	}
}
