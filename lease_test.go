package raisfs

import (
	"errors"
	"testing"
	"time"
)

func TestLease_SignVerify(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1000, 0)
	h := Hash{1, 2, 3}
	l := Lease{Op: LeaseOpPut, Volume: 7, Hash: h, Expiry: now.Add(time.Minute)}
	tok := l.Sign(key)
	if err := VerifyLease(key, tok, LeaseOpPut, 7, h, now); err != nil {
		t.Fatalf("VerifyLease(valid) = %v", err)
	}
	for name, c := range map[string]struct {
		key  []byte
		tok  string
		op   string
		vol  VolumeID
		h    Hash
		now  time.Time
		want error
	}{
		"expired":     {key, tok, LeaseOpPut, 7, h, now.Add(2 * time.Minute), ErrLeaseExpired},
		"other op":    {key, tok, LeaseOpDelete, 7, h, now, ErrPermissionDenied},
		"other vol":   {key, tok, LeaseOpPut, 8, h, now, ErrPermissionDenied},
		"other hash":  {key, tok, LeaseOpPut, 7, Hash{9}, now, ErrPermissionDenied},
		"other key":   {[]byte("another key of thirty-two bytes!"), tok, LeaseOpPut, 7, h, now, ErrPermissionDenied},
		"no key":      {nil, tok, LeaseOpPut, 7, h, now, ErrPermissionDenied},
		"empty":       {key, "", LeaseOpPut, 7, h, now, ErrPermissionDenied},
		"garbage":     {key, "x.y", LeaseOpPut, 7, h, now, ErrPermissionDenied},
		"late expiry": {key, "99999999999999999." + tok[len("60000000000000")+7:], LeaseOpPut, 7, h, now, ErrPermissionDenied},
	} {
		if err := VerifyLease(c.key, c.tok, c.op, c.vol, c.h, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: VerifyLease = %v, want %v", name, err, c.want)
		}
	}
}
