package mailfront

import (
	"bufio"
	"bytes"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Sections served from the stored bytes.
//
// go-imap's section helpers parse a message with go-message, which stops
// at the first header line it rejects (a line with no colon, a key with a
// space) and writes headers back re-serialised. A mail store must hand
// back what it was given, and a client that fetches BODY[HEADER] and
// BODY[TEXT] separately must be able to put the message back together
// (signatures are checked over those bytes). So the top-level HEADER,
// HEADER.FIELDS, HEADER.FIELDS.NOT and TEXT sections are cut from the
// stored message at the end of its header block (Message.HeaderLen), and
// the parsers (ENVELOPE, BODYSTRUCTURE, MIME parts, SEARCH) are given the
// header block without the lines they would stop at, so one malformed
// line does not hide every field after it.

// eachField calls fn with each field of the header block h, as stored: a
// line with the indented lines that follow it (folding), line endings
// included. A line that is neither a field nor its continuation is passed
// alone (fieldName rejects it). It stops at the blank line that ends the
// block.
func eachField(h []byte, fn func(field []byte)) {
	start, i := -1, 0
	for i < len(h) {
		end := len(h)
		if j := bytes.IndexByte(h[i:], '\n'); j >= 0 {
			end = i + j + 1
		}
		line := h[i:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		if start >= 0 && line[0] != ' ' && line[0] != '\t' {
			fn(h[start:i])
			start = -1
		}
		if start < 0 {
			start = i
		}
		i = end
	}
	if start >= 0 {
		fn(h[start:i])
	}
}

// fieldName returns the name of a field as eachField passes it, and false
// for a line that is not a field (no colon, or a name with a space or a
// control character in it).
func fieldName(field []byte) (string, bool) {
	i := bytes.IndexByte(field, ':')
	if i <= 0 {
		return "", false
	}
	name := bytes.TrimRight(field[:i], " \t")
	if len(name) == 0 {
		return "", false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(name), true
}

// withNewline returns field ending in a line break (the last field of a
// message with no body may lack one).
func withNewline(field []byte) []byte {
	if len(field) > 0 && field[len(field)-1] == '\n' {
		return field
	}
	return slices.Concat(field, []byte("\r\n"))
}

// headerFields is HEADER.FIELDS (names) or, with not, HEADER.FIELDS.NOT of
// header block h: the matching fields exactly as stored, then the blank
// line.
func headerFields(h []byte, names []string, not bool) []byte {
	var out []byte
	eachField(h, func(f []byte) {
		name, ok := fieldName(f)
		if !ok {
			return
		}
		match := slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, name) })
		if match != not {
			out = append(out, withNewline(f)...)
		}
	})
	return append(out, "\r\n"...)
}

// readHeader parses header block h as go-message does: up to the first
// line it rejects.
func readHeader(h []byte) (textproto.Header, error) {
	return textproto.ReadHeader(bufio.NewReader(bytes.NewReader(h)))
}

// parseHeader parses header block h, leaving out any field go-message
// rejects instead of stopping there.
func parseHeader(h []byte) textproto.Header {
	hdr, err := readHeader(h)
	if err == nil {
		return hdr
	}
	hdr, _ = readHeader(cleanHeader(h))
	return hdr
}

// cleanHeader returns header block h without the fields go-message
// rejects, ended by a blank line.
func cleanHeader(h []byte) []byte {
	var out []byte
	eachField(h, func(f []byte) {
		f = withNewline(f)
		if _, ok := fieldName(f); !ok {
			return
		}
		if _, err := readHeader(f); err == nil {
			out = append(out, f...)
		}
	})
	return append(out, "\r\n"...)
}

// parseable returns message b (header block hlen bytes long) as the
// parsers can read it: b itself when its header block parses, else a copy
// with the rejected header lines left out. The body is unchanged, so the
// MIME parts and their sizes are the stored ones.
func parseable(b []byte, hlen int64) []byte {
	hlen = min(hlen, int64(len(b)))
	if _, err := readHeader(b[:hlen]); err == nil {
		return b
	}
	return slices.Concat(cleanHeader(b[:hlen]), b[hlen:])
}

// partial applies a section's <offset.length> to out.
func partial(out []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return out
	}
	if p.Offset > int64(len(out)) {
		return nil
	}
	return out[p.Offset:min(p.Offset+p.Size, int64(len(out)))]
}

// topSection returns a top-level HEADER, HEADER.FIELDS[.NOT] or TEXT
// section of the message whose header block is h and whose stored bytes
// after it are text (nil for a header section), and false for any other
// section.
func topSection(bs *imap.FetchItemBodySection, h, text []byte) ([]byte, bool) {
	if len(bs.Part) != 0 {
		return nil, false
	}
	switch {
	case bs.Specifier == imap.PartSpecifierHeader && len(bs.HeaderFields) > 0:
		return partial(headerFields(h, bs.HeaderFields, false), bs.Partial), true
	case bs.Specifier == imap.PartSpecifierHeader && len(bs.HeaderFieldsNot) > 0:
		return partial(headerFields(h, bs.HeaderFieldsNot, true), bs.Partial), true
	case bs.Specifier == imap.PartSpecifierHeader:
		return partial(h, bs.Partial), true
	case bs.Specifier == imap.PartSpecifierText:
		return partial(text, bs.Partial), true
	}
	return nil, false
}

// withDefaultCharset gives every text part without a charset parameter
// the one RFC 2046 (4.1.2) defines for it, us-ascii, as Dovecot and Cyrus
// report it (go-imap leaves the parameter out).
func withDefaultCharset(bs imap.BodyStructure) imap.BodyStructure {
	switch p := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if strings.EqualFold(p.Type, "text") && !hasKeyFold(p.Params, "charset") {
			if p.Params == nil {
				p.Params = map[string]string{}
			}
			p.Params["charset"] = "us-ascii"
		}
		if p.MessageRFC822 != nil {
			withDefaultCharset(p.MessageRFC822.BodyStructure)
		}
	case *imap.BodyStructureMultiPart:
		for _, c := range p.Children {
			withDefaultCharset(c)
		}
	}
	return bs
}

func hasKeyFold(m map[string]string, key string) bool {
	for k := range m {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// envelope is the ENVELOPE of header block h. The subject is the field as
// stored (unfolded), as RFC 3501 has it and Dovecot sends it (go-imap's
// own ExtractEnvelope decodes encoded words and encodes the text again),
// and the address lists are read by envelopeAddresses.
func envelope(h []byte) *imap.Envelope {
	hdr := parseHeader(h)
	mh := mail.Header{Header: gomessage.Header{Header: hdr}}
	env := &imap.Envelope{
		Subject: hdr.Get("Subject"),
		From:    envelopeAddresses(hdr.Get("From")),
		Sender:  envelopeAddresses(hdr.Get("Sender")),
		ReplyTo: envelopeAddresses(hdr.Get("Reply-To")),
		To:      envelopeAddresses(hdr.Get("To")),
		Cc:      envelopeAddresses(hdr.Get("Cc")),
		Bcc:     envelopeAddresses(hdr.Get("Bcc")),
	}
	env.Date, _ = mh.Date()
	env.InReplyTo, _ = mh.MsgIDList("In-Reply-To")
	env.MessageID, _ = mh.MessageID()
	return env
}
