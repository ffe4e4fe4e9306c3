package mailfront

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raisfs/raisfs/mailstore"
)

func TestSections_CutFromTheStoredBytes(t *testing.T) {
	for _, tc := range []struct {
		name, msg    string
		fields       []string
		wantFields   string // HEADER.FIELDS (fields)
		wantFieldsNo string // HEADER.FIELDS.NOT (fields)
		wantSubject  string // parsed, for ENVELOPE and SEARCH
	}{
		{
			name:         "no header block",
			msg:          "no headers at all, just a line\r\n",
			fields:       []string{"subject"},
			wantFields:   "\r\n",
			wantFieldsNo: "\r\n",
		},
		{
			name:         "folded, bare LF, odd spacing",
			msg:          "Subject:  two\n\tlines \nFrom : a@b\r\nX-Empty:\r\n\r\nbody\r\n",
			fields:       []string{"SUBJECT", "from"},
			wantFields:   "Subject:  two\n\tlines \nFrom : a@b\r\n\r\n",
			wantFieldsNo: "X-Empty:\r\n\r\n",
			wantSubject:  "two lines",
		},
		{
			name:         "a malformed line amid the fields",
			msg:          "From: a@b\r\nthis line is no field\r\nSubject: after it\r\n\r\nbody\r\n",
			fields:       []string{"Subject"},
			wantFields:   "Subject: after it\r\n\r\n",
			wantFieldsNo: "From: a@b\r\n\r\n",
			wantSubject:  "after it",
		},
		{
			name:         "header only, no final line break",
			msg:          "Subject: s",
			fields:       []string{"subject"},
			wantFields:   "Subject: s\r\n\r\n",
			wantFieldsNo: "\r\n",
			wantSubject:  "s",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.msg)
			hlen := mailstore.HeaderBlockLen(b)
			h, text := b[:hlen], b[hlen:]
			get := func(bs *imap.FetchItemBodySection) string {
				out, ok := topSection(bs, h, text)
				if !ok {
					t.Fatalf("%+v: not a top-level section", bs)
				}
				return string(out)
			}
			header := get(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader})
			body := get(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierText})
			if header+body != tc.msg {
				t.Errorf("HEADER %q + TEXT %q is not the message %q", header, body, tc.msg)
			}
			if got := get(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: tc.fields}); got != tc.wantFields {
				t.Errorf("HEADER.FIELDS %v = %q, want %q", tc.fields, got, tc.wantFields)
			}
			if got := get(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: tc.fields}); got != tc.wantFieldsNo {
				t.Errorf("HEADER.FIELDS.NOT %v = %q, want %q", tc.fields, got, tc.wantFieldsNo)
			}
			part := get(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 1, Size: 2}})
			if want := body[min(1, len(body)):min(3, len(body))]; part != want {
				t.Errorf("TEXT<1.2> = %q, want %q", part, want)
			}
			if hdr := parseHeader(h); hdr.Get("Subject") != tc.wantSubject {
				t.Errorf("parsed Subject = %q, want %q", hdr.Get("Subject"), tc.wantSubject)
			}
			if p := parseable(b, int64(hlen)); !bytes.HasSuffix(p, text) {
				t.Errorf("parseable changed the body: %q", p)
			}
		})
	}
	if _, ok := topSection(&imap.FetchItemBodySection{Part: []int{1}, Specifier: imap.PartSpecifierHeader}, nil, nil); ok {
		t.Error("a part's HEADER taken for the message's")
	}
}

func TestSections_TextPartsGetTheDefaultCharset(t *testing.T) {
	msg := "Content-Type: multipart/mixed; boundary=X\r\n\r\n" +
		"--X\r\n\r\nno content type\r\n" +
		"--X\r\nContent-Type: text/html\r\n\r\n<p>\r\n" +
		"--X\r\nContent-Type: text/plain; CHARSET=utf-8\r\n\r\nx\r\n" +
		"--X\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner\r\n" +
		"--X\r\nContent-Type: application/octet-stream\r\n\r\nAA==\r\n--X--\r\n"
	bs := withDefaultCharset(imapserver.ExtractBodyStructure(strings.NewReader(msg)))
	var got []string
	var walk func(imap.BodyStructure)
	walk = func(b imap.BodyStructure) {
		switch p := b.(type) {
		case *imap.BodyStructureSinglePart:
			got = append(got, p.MediaType()+" "+p.Params["charset"]+p.Params["CHARSET"])
			if p.MessageRFC822 != nil {
				walk(p.MessageRFC822.BodyStructure)
			}
		case *imap.BodyStructureMultiPart:
			for _, c := range p.Children {
				walk(c)
			}
		}
	}
	walk(bs)
	want := []string{"text/plain us-ascii", "text/html us-ascii", "text/plain utf-8", "message/rfc822 ", "text/plain us-ascii", "application/octet-stream "}
	if !slices.Equal(got, want) {
		t.Fatalf("parts and charsets %q, want %q", got, want)
	}
}
