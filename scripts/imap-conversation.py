#!/usr/bin/env python3
"""Runs one fixed IMAP conversation (about 200 commands in two sessions)
against a server and prints every command and answer, for comparing two
servers' answers line by line (scripts/imap-vs-dovecot).

    imap-conversation.py HOST PORT     (user demo, password demo, empty mailboxes)

Written against the raw protocol on purpose: a client library would hide
the very answers being compared.
"""
import re
import select
import socket
import sys

class Session:
    """One IMAP connection whose commands and answers are printed, each
    answer line prefixed with the session's name."""

    def __init__(self, name, host, port):
        self.name = name
        self.sock = socket.create_connection((host, port))
        self.buf = b''
        self.n = 0
        self.tag = b''
        self.readline()  # greeting: differs by server, not printed

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError('%s: connection closed' % self.name)
        self.buf += d

    def _line(self):
        while b'\n' not in self.buf:
            self._fill()
        i = self.buf.index(b'\n') + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def readline(self):
        """One response line with the literals it carries."""
        line = self._line()
        out = line
        m = re.search(rb'\{(\d+)\}\r\n$', line)
        while m:
            out += self._read(int(m.group(1)))
            line = self._line()
            out += line
            m = re.search(rb'\{(\d+)\}\r\n$', line)
        return out

    def show(self, r):
        text = r.decode(errors='replace').rstrip('\r\n').replace('\r\n', '\\r\\n')
        print('  ', self.name, text)

    def _next_tag(self):
        self.n += 1
        self.tag = b'%s%d' % (self.name.encode(), self.n)
        return self.tag

    def cmd(self, line, lit=None):
        """Sends line (and a literal after it, once the server asks) and
        prints the answers up to the tagged one."""
        tag = self._next_tag()
        print('>>', self.name, line.decode(errors='replace') + (' {%d}' % len(lit) if lit is not None else ''))
        if lit is None:
            self.sock.sendall(tag + b' ' + line + b'\r\n')
        else:
            self.sock.sendall(tag + b' ' + line + b' {%d}\r\n' % len(lit))
            r = self.readline()
            if not r.startswith(b'+'):
                self.show(r)
                return
            self.sock.sendall(lit + b'\r\n')
        while True:
            r = self.readline()
            self.show(r)
            if r.startswith(tag + b' ') or r.startswith(b'* BYE'):
                return

    def idle_start(self):
        tag = self._next_tag()
        print('>>', self.name, 'IDLE')
        self.sock.sendall(tag + b' IDLE\r\n')
        while not self.readline().startswith(b'+'):
            pass

    def idle_wait(self, secs=3):
        """Prints the next line the server pushes, if one comes within secs."""
        if b'\n' not in self.buf and not select.select([self.sock], [], [], secs)[0]:
            print('  ', self.name, '(nothing within %ss)' % secs)
            return
        self.show(self.readline())

    def idle_done(self):
        self.sock.sendall(b'DONE\r\n')
        while True:
            r = self.readline()
            self.show(r)
            if r.startswith(self.tag + b' '):
                return


def main():
    host, port = sys.argv[1], int(sys.argv[2])

    # One session: mailboxes, APPEND, FETCH of every kind, SEARCH, STORE,
    # COPY, MOVE, EXPUNGE, RENAME, DELETE, odd and bad input.
    a = Session('A', host, port)
    m1 = (b"From: Alice Example <alice@example.com>\r\nTo: bob@example.org, \"Carol, C.\" <carol@example.net>\r\n"
          b"Cc: undisclosed-recipients:;\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= hello\r\nDate: Mon, 30 Nov 2026 01:02:03 +0100\r\n"
          b"Message-ID: <m1@example.com>\r\nIn-Reply-To: <m0@example.com>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
          b"Content-Transfer-Encoding: 8bit\r\n\r\nH\xc3\xa9llo world\r\nline two\r\n--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n"
          b"--YY\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--YY\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: x@y\r\n\r\ninner body\r\n--YY--\r\n"
          b"--XX\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--XX--\r\nepilogue\r\n")
    m2 = b"Subject: plain\r\nFrom: bob@example.org\r\n\r\nJust text.\r\n"
    m3 = b"no headers at all, just a line\r\n"
    a.cmd(b'CAPABILITY')
    a.cmd(b'LOGIN demo demo')
    a.cmd(b'NAMESPACE')
    a.cmd(b'LIST "" ""')
    a.cmd(b'LIST "" "*"')
    a.cmd(b'LIST "" "%"')
    a.cmd(b'LSUB "" "*"')
    a.cmd(b'CREATE Work')
    a.cmd(b'CREATE Work/Sub')
    a.cmd(b'CREATE work')
    a.cmd(b'CREATE INBOX')
    a.cmd(b'CREATE Work')
    a.cmd(b'CREATE "Trailing/"')
    a.cmd(b'LIST "" "Work*"')
    a.cmd(b'LIST "" "Work/%"')
    a.cmd(b'LIST (SPECIAL-USE) "" "*"')
    a.cmd(b'LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT))')
    a.cmd(b'SUBSCRIBE Work')
    a.cmd(b'SUBSCRIBE Nonexistent')
    a.cmd(b'LSUB "" "*"')
    a.cmd(b'UNSUBSCRIBE Work')
    a.cmd(b'STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN SIZE)')
    a.cmd(b'STATUS Nope (MESSAGES)')
    a.cmd(b'APPEND INBOX (\\Seen $Label1) "30-Nov-2025 01:02:03 +0100"', m1)
    a.cmd(b'APPEND INBOX', m2)
    a.cmd(b'APPEND INBOX (\\flagged \\SEEN)', m3)
    a.cmd(b'APPEND Nope', m2)
    a.cmd(b'APPEND INBOX (\\Recent)', m2)
    a.cmd(b'STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE)')
    a.cmd(b'EXAMINE INBOX')
    a.cmd(b'STORE 1 +FLAGS (\\Deleted)')
    a.cmd(b'SELECT INBOX')
    a.cmd(b'FETCH 1:* (FLAGS RFC822.SIZE)')
    a.cmd(b'FETCH 1 (ENVELOPE)')
    a.cmd(b'FETCH 1 (BODYSTRUCTURE)')
    a.cmd(b'FETCH 1 (BODY)')
    a.cmd(b'FETCH 2:3 (ENVELOPE BODYSTRUCTURE)')
    a.cmd(b'FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject From)])')
    a.cmd(b'FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Cc Date)])')
    a.cmd(b'FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME])')
    a.cmd(b'FETCH 1 (BODY.PEEK[2.2] BODY.PEEK[2.2.HEADER] BODY.PEEK[2.2.TEXT])')
    a.cmd(b'FETCH 1 (BODY.PEEK[3])')
    a.cmd(b'FETCH 1 (BODY.PEEK[TEXT]<0.20> BODY.PEEK[]<5.10>)')
    a.cmd(b'FETCH 1 (BODY.PEEK[]<100000.10>)')
    a.cmd(b'FETCH 1 (BODY.PEEK[9])')
    a.cmd(b'FETCH 1 (BINARY.PEEK[3] BINARY.SIZE[3])')
    a.cmd(b'FETCH 3 (BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1])')
    a.cmd(b'FETCH 2 (RFC822.HEADER RFC822.TEXT)')
    a.cmd(b'FETCH 2 (FLAGS)')
    a.cmd(b'FETCH 2 FAST')
    a.cmd(b'FETCH 2 ALL')
    a.cmd(b'FETCH 2 FULL')
    a.cmd(b'FETCH 9 FLAGS')
    a.cmd(b'FETCH 2 (INTERNALDATE UID)')
    a.cmd(b'UID FETCH 1:* (FLAGS)')
    a.cmd(b'UID FETCH 999 (FLAGS)')
    a.cmd(b'UID FETCH * (FLAGS)')
    a.cmd(b'STORE 2 FLAGS (\\answered foo)')
    a.cmd(b'STORE 2 +FLAGS.SILENT (\\Draft)')
    a.cmd(b'STORE 2 -FLAGS (foo)')
    a.cmd(b'UID STORE 1:2 +FLAGS (\\Flagged)')
    a.cmd(b'STORE 1:* FLAGS (\\Recent)')
    a.cmd(b'SEARCH ALL')
    a.cmd(b'SEARCH SEEN')
    a.cmd(b'SEARCH UNSEEN')
    a.cmd(b'SEARCH FLAGGED NOT DELETED')
    a.cmd(b'SEARCH KEYWORD $Label1')
    a.cmd(b'SEARCH SUBJECT hello')
    a.cmd(b'SEARCH SUBJECT "Gr\xc3\xbc"')
    a.cmd(b'SEARCH CHARSET UTF-8 SUBJECT {4}\r\nGr\xc3\xbc' if False else b'SEARCH FROM alice')
    a.cmd(b'SEARCH TO carol')
    a.cmd(b'SEARCH HEADER Message-ID <m1@example.com>')
    a.cmd(b'SEARCH BODY world')
    a.cmd(b'SEARCH TEXT "Just text"')
    a.cmd(b'SEARCH LARGER 100 SMALLER 10000')
    a.cmd(b'SEARCH OR SEEN FLAGGED')
    a.cmd(b'SEARCH 2:*')
    a.cmd(b'SEARCH UID 2:3')
    a.cmd(b'SEARCH SINCE 1-Jan-2020')
    a.cmd(b'SEARCH SENTBEFORE 1-Dec-2026')
    a.cmd(b'SEARCH CHARSET KOI8-R ALL')
    a.cmd(b'UID SEARCH ALL')
    a.cmd(b'SEARCH RETURN (MIN MAX COUNT) ALL')
    a.cmd(b'SEARCH RETURN () ALL')
    a.cmd(b'SEARCH BOGUS')
    a.cmd(b'COPY 1:2 Work')
    a.cmd(b'UID COPY 3 Work')
    a.cmd(b'COPY 1 Nope')
    a.cmd(b'MOVE 2 Work')
    a.cmd(b'FETCH 1:* (UID FLAGS)')
    a.cmd(b'STORE 1 +FLAGS (\\Deleted)')
    a.cmd(b'EXPUNGE')
    a.cmd(b'UID EXPUNGE 1:*')
    a.cmd(b'STATUS Work (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)')
    a.cmd(b'RENAME Work Play')
    a.cmd(b'LIST "" "*"')
    a.cmd(b'RENAME INBOX Old')
    a.cmd(b'LIST "" "*"')
    a.cmd(b'DELETE Play/Sub')
    a.cmd(b'DELETE Play')
    a.cmd(b'DELETE INBOX')
    a.cmd(b'DELETE Nope')
    a.cmd(b'SELECT Old')
    a.cmd(b'FETCH 1:* (UID FLAGS)')
    a.cmd(b'CLOSE')
    a.cmd(b'UNSELECT')
    a.cmd(b'SELECT Nope')
    a.cmd(b'CHECK')
    a.cmd(b'NOOP')

    # Address fields in ENVELOPE: groups, comments as names, routes,
    # missing domains, quoting, broken input; dates and message ids.
    a.cmd(b'CREATE Addr')
    for h in [b'From: user@example.org (Real Name)\r\nTo: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\nSender: \r\nReply-To: \r\n',
              b'From: <@route1,@route2:user@example.org>\r\nTo: root\r\nCc: Name <root>\r\n',
              b'From: "Doe, John \\"JD\\"" <john@example.org> (comment)\r\nTo: "john doe"@example.org, user@[192.0.2.1]\r\n',
              b'From: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>\r\nTo: a@x.org,,  , b@y.org\r\nCc: Team: A <a@x.org>, b@x.org; c@y.org\r\n',
              b'From: <unterminated@x.org\r\nTo: open group: a@x.org\r\nBcc: @, <>\r\n',
              b'Date: Mon, 2 Nov 2026 9:05:03 +0000 (UTC)\r\nMessage-ID: no-angle@x\r\nIn-Reply-To: <a@b> <c@d>\r\nFrom: x@y\r\n']:
        a.cmd(b'APPEND Addr', h + b'Subject: addresses\r\n\r\nbody\r\n')
    a.cmd(b'EXAMINE Addr')
    a.cmd(b'FETCH 1:* (ENVELOPE)')
    a.cmd(b'CLOSE')
    a.cmd(b'DELETE Addr')

    # MIME sections: a message that is one message/rfc822, and a
    # multipart with a folded boundary, prologues and epilogues, and a
    # message/rfc822 part holding a multipart/alternative.
    rfc822 = (b'From: outer@example.org\r\nMime-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n'
              b'From: inner@example.org\r\nSubject: enclosed\r\nX-Extra: 1\r\n\r\nInner text\r\n')
    nested = (b'From: outer@example.org\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1\r\n b2"\r\n\r\n'
              b'The prologue\r\n\r\n--b1 b2\r\nContent-Type: text/x-custom; charset=us-ascii\r\n\r\nfirst\r\n\r\n'
              b'--b1 b2\r\nContent-Type: message/rfc822\r\n\r\n'
              b'From: inner@example.org\r\nSubject: enclosed\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
              b'Inner prologue\r\n--alt\r\nContent-Type: text/html\r\n\r\n<b>bold</b>\r\n\r\n'
              b'--alt\r\nContent-Type: text/plain\r\n\r\nplain words\r\n\r\n--alt--\r\nInner epilogue\r\n\r\n'
              b'--b1 b2--\r\nThe epilogue\r\n')
    a.cmd(b'CREATE Mime')
    a.cmd(b'APPEND Mime', rfc822)
    a.cmd(b'APPEND Mime', nested)
    a.cmd(b'EXAMINE Mime')
    a.cmd(b'FETCH 1 (BODY BODYSTRUCTURE)')
    a.cmd(b'FETCH 1 (BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT])')
    a.cmd(b'FETCH 1 (BODY.PEEK[1.HEADER.FIELDS (from subject x-none)] BODY.PEEK[1.HEADER.FIELDS.NOT (from subject x-none)])')
    a.cmd(b'FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])')
    a.cmd(b'FETCH 2 (BODY BODYSTRUCTURE)')
    a.cmd(b'FETCH 2 (BODY.PEEK[TEXT] BINARY.SIZE[TEXT] BINARY.SIZE[])')
    a.cmd(b'FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BINARY.SIZE[1] BINARY.SIZE[1.MIME])')
    a.cmd(b'FETCH 2 (BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT])')
    a.cmd(b'FETCH 2 (BINARY.SIZE[2] BINARY.SIZE[2.MIME] BINARY.SIZE[2.HEADER] BINARY.SIZE[2.TEXT])')
    a.cmd(b'FETCH 2 (BODY.PEEK[2.HEADER.FIELDS (from subject x-none)] BINARY.SIZE[2.HEADER.FIELDS.NOT (from subject x-none)])')
    a.cmd(b'FETCH 2 (BODY.PEEK[2.1] BODY.PEEK[2.1.MIME] BODY.PEEK[2.2] BODY.PEEK[2.2.MIME] BINARY.SIZE[2.1] BINARY.SIZE[2.2.MIME])')
    a.cmd(b'FETCH 2 (BODY.PEEK[3] BODY.PEEK[2.3] BODY.PEEK[1.1] BODY.PEEK[2.1.1])')
    a.cmd(b'CLOSE')
    a.cmd(b'DELETE Mime')

    # Names, hierarchy, BINARY, sequence sets, read-only mailboxes, IDLE.
    b64 = b"Subject: b64\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSMOpbGxvIHdvcmxkCg==\r\n"
    a.cmd(b'ENABLE IMAP4rev2')
    a.cmd(b'ID NIL')
    a.cmd(b'SELECT inbox')
    a.cmd(b'UID FETCH 1:* (FLAGS)')
    a.cmd(b'FETCH 1:* (FLAGS)')
    a.cmd(b'SEARCH ALL')
    a.cmd(b'CREATE "With Space"')
    a.cmd(b'CREATE "&AMk-t&AOk-"')
    a.cmd(b'CREATE "Bad&name"')
    a.cmd(b'CREATE A/B/C')
    a.cmd(b'LIST "" "%"')
    a.cmd(b'LIST "A/" "%"')
    a.cmd(b'LIST "" "A/%"')
    a.cmd(b'LIST "" "*" RETURN (CHILDREN)')
    a.cmd(b'DELETE A')
    a.cmd(b'LIST "" "A*"')
    a.cmd(b'SELECT A')
    a.cmd(b'RENAME A/B Z')
    a.cmd(b'LIST "" "*"')
    a.cmd(b'RENAME Z "With Space"')
    a.cmd(b'APPEND INBOX', m2)
    a.cmd(b'APPEND INBOX', b64)
    a.cmd(b'APPEND inbox (\\Seen)', m2)
    a.cmd(b'NOOP')
    a.cmd(b'FETCH 1 (BODY[1] BODY.PEEK[1.MIME])')
    a.cmd(b'FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[1])')
    a.cmd(b'FETCH 2 (BINARY.PEEK[])')
    a.cmd(b'FETCH 2 (BODYSTRUCTURE)')
    a.cmd(b'FETCH 2,1 (UID)')
    a.cmd(b'FETCH *:1 (UID)')
    a.cmd(b'UID FETCH *:* (UID)')
    a.cmd(b'UID FETCH 3:2 (UID)')
    a.cmd(b'FETCH 1 (FLAGS)')
    a.cmd(b'STORE 1:2 +FLAGS (\\Deleted)')
    a.cmd(b'SEARCH DELETED')
    a.cmd(b'SEARCH RETURN (SAVE) DELETED')
    a.cmd(b'FETCH $ (UID)')
    a.cmd(b'UID STORE 1:* +FLAGS ($Custom)')
    a.cmd(b'UID MOVE 3 "With Space"')
    a.cmd(b'STATUS INBOX (MESSAGES)')
    a.cmd(b'EXPUNGE')
    a.cmd(b'FETCH 1:* (UID FLAGS)')
    a.cmd(b'COPY 1 INBOX')
    a.cmd(b'FETCH 1:* (UID)')
    a.cmd(b'STORE 1 FLAGS ()')
    a.cmd(b'STORE 1 FLAGS (\\Seen) (UNCHANGEDSINCE 5)')
    a.cmd(b'SELECT "With Space"')
    a.cmd(b'FETCH 1:* (UID FLAGS)')
    a.cmd(b'EXAMINE "With Space"')
    a.cmd(b'EXPUNGE')
    a.cmd(b'MOVE 1 INBOX')
    a.cmd(b'UNSELECT')
    a.cmd(b'FETCH 1 FLAGS')
    a.idle_start()
    a.idle_wait(1)
    a.idle_done()
    a.cmd(b'SELECT INBOX')
    a.idle_start()
    a.idle_wait(1)
    a.idle_done()
    a.cmd(b'LOGOUT')

    # Two sessions on one mailbox: what each is told of the other's changes.
    # Mailboxes of their own, so what the first part left (RENAME INBOX is
    # refused by Dovecot, done by RAIS-FS) does not carry over.
    a, b = Session('A', host, port), Session('B', host, port)
    def msg(i): return b"Subject: m%d\r\nFrom: x@y\r\nDate: Mon, 30 Nov 2026 01:02:03 +0100\r\n\r\nbody %d\r\n" % (i, i)
    a.cmd(b'LOGIN demo demo'); b.cmd(b'LOGIN demo demo')
    a.cmd(b'CREATE Two'); a.cmd(b'CREATE TwoWork')
    a.cmd(b'SELECT Two'); b.cmd(b'SELECT Two')
    a.cmd(b'APPEND Two (\\Flagged) "01-Jan-2020 10:00:00 +0200"', msg(1))
    a.cmd(b'APPEND Two', msg(2))
    a.cmd(b'APPEND Two', msg(3))
    b.cmd(b'NOOP')
    a.cmd(b'STORE 1 +FLAGS (\\Seen)')
    b.cmd(b'NOOP')
    a.cmd(b'STORE 2 +FLAGS.SILENT (\\Deleted)')
    a.cmd(b'EXPUNGE')
    b.cmd(b'FETCH 3 (UID FLAGS)')
    b.cmd(b'STORE 2 +FLAGS (\\Answered)')
    b.cmd(b'NOOP')
    b.cmd(b'STATUS Two (MESSAGES UIDNEXT UNSEEN)')
    a.cmd(b'COPY 1 TwoWork')
    b.cmd(b'EXAMINE TwoWork')
    b.cmd(b'FETCH 1 (FLAGS INTERNALDATE)')
    b.cmd(b'SELECT Two')
    b.idle_start()
    a.cmd(b'APPEND Two', msg(4))
    b.idle_wait()
    a.cmd(b'STORE 1 -FLAGS (\\Seen)')
    b.idle_wait()
    a.cmd(b'UID STORE 1 +FLAGS (\\Deleted)')
    a.cmd(b'UID EXPUNGE 1')
    b.idle_wait()
    b.idle_wait(1)
    b.idle_done()
    a.cmd(b'MOVE 1 TwoWork')
    b.cmd(b'NOOP')
    a.cmd(b'SEARCH SENTON 30-Nov-2026')
    a.cmd(b'SEARCH ON 1-Jan-2020')
    a.cmd(b'SEARCH BEFORE 2-Jan-2020')
    a.cmd(b'FETCH 1:* (UID FLAGS)')
    a.cmd(b'CLOSE')
    b.cmd(b'NOOP')
    a.cmd(b'LOGOUT'); b.cmd(b'LOGOUT')


if __name__ == '__main__':
    main()
