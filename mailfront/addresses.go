package mailfront

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// ENVELOPE address lists (RFC 3501 7.4.2), parsed here rather than with
// net/mail (through go-imap and go-message), which refuses a whole field
// over one address it does not like and has no groups: a field of group
// syntax ("undisclosed-recipients:;") or with an address lacking a domain
// came back NIL. This parser takes RFC 5322's address-list with its
// obsolete forms and never fails: what it cannot read it skips to the
// next comma.
//
//   - a group is a start marker (the group's name as mailbox, no host),
//     its members, and an end marker (all NIL);
//   - a mailbox's name is its display name (quoted strings unquoted, words
//     joined by one space, encoded words left as sent), or, without one,
//     its last comment ("user@example.org (Real Name)");
//   - a source route (<@relay:user@example.org>) is dropped: go-imap's
//     writer has no field for it;
//   - an address without a domain keeps its mailbox and gets the domain
//     MISSING_DOMAIN ("From: root"), one without a local part the mailbox
//     MISSING_MAILBOX, as Dovecot does: a NIL host would make it a group
//     marker.

// addrToken is one lexical token of an address field.
type addrToken struct {
	kind byte   // 'w' word (atom or quoted string), 'c' comment, 'd' domain literal, or the special itself
	text string // unquoted
}

// lexAddresses splits v into tokens. Unterminated quotes, comments and
// domain literals end at the end of the field.
func lexAddresses(v string) []addrToken {
	var out []addrToken
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ')' || c == ']':
			i++ // space, or a stray closing bracket
		case c == '"':
			var b strings.Builder
			i++
			for i < len(v) && v[i] != '"' {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				if v[i] != '\r' && v[i] != '\n' {
					b.WriteByte(v[i])
				}
				i++
			}
			i++
			out = append(out, addrToken{'w', b.String()})
		case c == '(':
			var b strings.Builder
			depth := 0
			for i < len(v) {
				ch := v[i]
				if ch == '\\' && i+1 < len(v) {
					i++
					ch = v[i]
				} else if ch == '(' {
					depth++
					if depth == 1 {
						i++
						continue
					}
				} else if ch == ')' {
					depth--
					if depth == 0 {
						i++
						break
					}
				}
				b.WriteByte(ch)
				i++
			}
			out = append(out, addrToken{'c', strings.TrimSpace(b.String())})
		case c == '[':
			j := strings.IndexByte(v[i:], ']')
			if j < 0 {
				j = len(v) - i - 1
			}
			out = append(out, addrToken{'d', v[i : i+j+1]})
			i += j + 1
		case strings.IndexByte("<>:;,@", c) >= 0:
			out = append(out, addrToken{c, string(c)})
			i++
		default:
			j := i
			for j < len(v) && strings.IndexByte(" \t\r\n\"()[]<>:;,@", v[j]) < 0 {
				j++
			}
			out = append(out, addrToken{'w', v[i:j]})
			i = j
		}
	}
	return out
}

// addrParser reads tokens into ENVELOPE addresses.
type addrParser struct {
	toks []addrToken
	pos  int
	out  []imap.Address
}

func (p *addrParser) peek() byte {
	for p.pos < len(p.toks) && p.toks[p.pos].kind == 'c' {
		p.pos++
	}
	if p.pos == len(p.toks) {
		return 0
	}
	return p.toks[p.pos].kind
}

// words reads a run of words (and the comments among them) and returns
// the words and the text of the last comment.
func (p *addrParser) words() (ws []string, comment string) {
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		switch t.kind {
		case 'w':
			ws = append(ws, t.text)
		case 'c':
			comment = t.text
		default:
			return ws, comment
		}
		p.pos++
	}
	return ws, comment
}

// domain reads a domain, words and domain literals up to the next
// special, and the last comment among or after them.
func (p *addrParser) domain() (domain, comment string) {
	var b strings.Builder
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		switch t.kind {
		case 'w', 'd':
			b.WriteString(t.text)
		case 'c':
			comment = t.text
		default:
			return b.String(), comment
		}
		p.pos++
	}
	return b.String(), comment
}

// skip moves past the rest of a malformed address: to the next comma (or
// the group's end when in a group).
func (p *addrParser) skip(inGroup bool) {
	for p.pos < len(p.toks) {
		k := p.toks[p.pos].kind
		if k == ',' || (inGroup && k == ';') {
			return
		}
		p.pos++
	}
}

// address reads one mailbox (or, outside a group, a group) and appends
// what it found.
func (p *addrParser) address(inGroup bool) {
	ws, comment := p.words()
	phrase := strings.Join(ws, " ")
	switch p.peek() {
	case ':':
		if inGroup { // no groups in groups: read on as members
			p.pos++
			return
		}
		p.pos++
		p.out = append(p.out, imap.Address{Mailbox: phrase})
		for {
			switch p.peek() {
			case 0:
				p.out = append(p.out, imap.Address{})
				return
			case ';':
				p.pos++
				p.out = append(p.out, imap.Address{})
				return
			case ',':
				p.pos++
			default:
				start := p.pos
				p.address(true)
				if p.pos == start {
					p.pos++
				}
			}
		}
	case '<':
		p.pos++
		// obs-route: @domain *("," @domain) ":"
		if p.peek() == '@' {
			for p.peek() == '@' || p.peek() == ',' {
				p.pos++
				p.domain() // dropped: no route in go-imap's Address
			}
			if p.peek() == ':' {
				p.pos++
			}
		}
		lw, _ := p.words()
		local, host := strings.Join(lw, ""), ""
		if p.peek() == '@' {
			p.pos++
			host, _ = p.domain()
		}
		if p.peek() == '>' {
			p.pos++
		} else {
			p.skip(inGroup)
		}
		// A comment after the angle address names the mailbox too.
		if _, c := p.words(); phrase == "" && c != "" {
			comment = c
		}
		name := phrase
		if name == "" {
			name = comment
		}
		if local != "" || host != "" {
			p.out = append(p.out, mailbox(name, local, host))
		}
	case '@':
		p.pos++
		host, c := p.domain()
		if c != "" {
			comment = c
		}
		if local := strings.Join(ws, ""); local != "" || host != "" {
			p.out = append(p.out, mailbox(comment, local, host))
		}
	default:
		if phrase != "" && !strings.ContainsAny(phrase, " \t") {
			// A bare word: a mailbox without a domain.
			p.out = append(p.out, mailbox(comment, strings.Join(ws, ""), ""))
		}
		if k := p.peek(); k != ',' && k != 0 && !(inGroup && k == ';') {
			p.skip(inGroup)
		}
	}
}

// mailbox is one ENVELOPE address, with the placeholders for a missing
// part.
func mailbox(name, local, host string) imap.Address {
	if local == "" {
		local = "MISSING_MAILBOX"
	}
	if host == "" {
		host = "MISSING_DOMAIN"
	}
	return imap.Address{Name: name, Mailbox: local, Host: host}
}

// envelopeAddresses parses an address-list field value.
func envelopeAddresses(v string) []imap.Address {
	p := &addrParser{toks: lexAddresses(v)}
	for p.peek() != 0 {
		switch p.peek() {
		case ',', ';', '>':
			p.pos++
			continue
		}
		start := p.pos
		p.address(false)
		if p.pos == start {
			p.pos++
		}
	}
	return p.out
}
