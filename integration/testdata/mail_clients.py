"""Drives a RAIS-FS mail front end with Python's standard imaplib and
smtplib.LMTP, as a mail client and a mail transfer agent would, and checks
the answers mainstream IMAP servers give. Exits non-zero on any mismatch.

usage: mail_clients.py IMAP_HOST:PORT LMTP_HOST:PORT USER PASSWORD
"""
import imaplib
import re
import smtplib
import sys


def main():
    ih, ip = sys.argv[1].rsplit(":", 1)
    lh, lp = sys.argv[2].rsplit(":", 1)
    user, pw = sys.argv[3], sys.argv[4]

    # LMTP: per-recipient status; the unknown one alone is refused.
    lmtp = smtplib.LMTP(lh, int(lp))
    body = b"From: Py <py@example.com>\r\nSubject: from smtplib\r\n\r\nhello via LMTP\r\n"
    refused = lmtp.sendmail("py@example.com", [user + "@localhost", "nobody@localhost"], body)
    assert list(refused) == ["nobody@localhost"], refused
    assert refused["nobody@localhost"][0] == 550, refused
    lmtp.quit()

    m = imaplib.IMAP4(ih, int(ip))
    typ, _ = m.login(user, pw)
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    n = int(data[0])
    assert n >= 1, n

    # APPEND with flags and a date; UIDPLUS answers APPENDUID.
    typ, data = m.append("INBOX", r"(\Flagged $Work)", '"01-Jan-2026 10:00:00 +0000"',
                         b"Subject: appended\r\n\r\nbody line\r\n")
    assert typ == "OK", data
    assert re.search(rb"APPENDUID \d+ (\d+)", data[0]), data
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))

    typ, data = m.uid("FETCH", str(uid), "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK", data
    meta, raw = data[0]
    assert raw == b"Subject: appended\r\n\r\nbody line\r\n", raw
    assert rb"\Flagged" in meta and b"$Work" in meta, meta
    # date-day-fixed is SP DIGIT or 2DIGIT (RFC 3501)
    assert re.search(rb'INTERNALDATE "( 1|01)-Jan-2026 10:00:00 \+0000"', meta), meta
    assert b"RFC822.SIZE %d" % len(raw) in meta, meta

    # Flags come back in canonical case however they were sent.
    typ, data = m.uid("STORE", str(uid), "+FLAGS", r"(\seen \ANSWERED)")
    assert typ == "OK", data
    assert rb"\Seen" in data[0] and rb"\Answered" in data[0], data

    typ, data = m.uid("SEARCH", None, "SUBJECT", '"from smtplib"')
    assert typ == "OK" and data[0].split(), data
    typ, data = m.search(None, "UNSEEN")
    assert typ == "OK", data

    # Partial fetch: served by a range read.
    typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[]<0.7>)")
    assert data[0][1] == b"Subject", data

    # Mailboxes, COPY, MOVE, EXPUNGE.
    assert m.create("Py/Sub")[0] == "OK"
    assert m.uid("COPY", str(uid), "Py/Sub")[0] == "OK"
    typ, data = m.status("Py/Sub", "(MESSAGES UIDNEXT)")
    assert typ == "OK" and b"MESSAGES 1" in data[0], data
    typ, data = m.list()
    assert any(b'"Py/Sub"' in l or b" Py/Sub" in l for l in data), data
    typ, data = m.uid("MOVE", str(uid), "Py")
    assert typ == "OK", data
    typ, data = m.status("INBOX", "(MESSAGES)")
    assert b"MESSAGES %d" % n in data[0], data
    m.select("Py")
    m.store("1", "+FLAGS", r"(\Deleted)")
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"1"], data
    assert m.delete("Py/Sub")[0] == "OK"
    assert m.select("Nope")[0] == "NO"
    m.logout()

    # A wrong password is refused.
    m = imaplib.IMAP4(ih, int(ip))
    try:
        m.login(user, pw + "x")
        raise AssertionError("login with a wrong password succeeded")
    except imaplib.IMAP4.error:
        pass
    print("python imaplib and smtplib.LMTP: ok")


if __name__ == "__main__":
    main()
