package secrets

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Session is what a dashboard session token carries. Times have whole
// seconds and are in UTC.
type Session struct {
	ID        string // random, 32 hex characters; the key of a revocation list
	UserID    string
	Role      string
	IssuedAt  time.Time
	ExpiresAt time.Time // the session is expired from this instant on
	CSRF      string    // random per session, 32 hex characters; see CheckCSRF
}

// Limits of session tokens.
const (
	// MaxSessionField is the longest UserID or Role a session can carry,
	// in bytes.
	MaxSessionField = 255
	// maxTokenLen is longer than any token IssueSession can make; longer
	// input is refused before any hashing.
	maxTokenLen = 1024
)

// Layout of a version 1 session payload.
const (
	sessionVersion = 1
	offID          = 1
	offCSRF        = offID + 16
	offIssued      = offCSRF + 16
	offExpires     = offIssued + 8
	offUser        = offExpires + 8
)

// b64 is the encoding of both parts of a token. Strict decoding refuses
// non-zero padding bits, so no two texts decode to the same payload.
var b64 = base64.RawURLEncoding.Strict()

// IssueSession starts a session for userID with role, valid for ttl from
// now (at least one second; times are cut to whole seconds). It returns
// the token to put in the session cookie and the Session it stands for.
//
// A token is
//
//	base64url(payload) "." base64url(HMAC-SHA256(session subkey, base64url(payload)))
//
// in the URL alphabet without padding, where payload is, in order:
//
//	1 byte     version, 1
//	16 bytes   session id
//	16 bytes   CSRF token
//	8 bytes    issued at, Unix seconds, big-endian
//	8 bytes    expires at, Unix seconds, big-endian
//	1 byte     length of the user id, then the user id
//	1 byte     length of the role, then the role
//
// The MAC covers the payload's text exactly as sent, so changing any
// character of the token, in either part, makes it invalid. Tokens are not
// encrypted: the user id and role can be read by whoever holds one.
func (k *Key) IssueSession(userID, role string, ttl time.Duration, now time.Time) (token string, s Session, err error) {
	switch {
	case !k.valid():
		return "", Session{}, errZeroKey
	case userID == "":
		return "", Session{}, errors.New("session: empty user id")
	case len(userID) > MaxSessionField:
		return "", Session{}, fmt.Errorf("session: user id is %d bytes, at most %d allowed", len(userID), MaxSessionField)
	case len(role) > MaxSessionField:
		return "", Session{}, fmt.Errorf("session: role is %d bytes, at most %d allowed", len(role), MaxSessionField)
	case ttl < time.Second:
		return "", Session{}, fmt.Errorf("session: ttl %v is under one second", ttl)
	}
	issued, expires := now.Unix(), now.Add(ttl).Unix()

	p := make([]byte, offUser, offUser+2+len(userID)+len(role))
	p[0] = sessionVersion
	rnd := randomBytes(32)
	copy(p[offID:], rnd[:16])
	copy(p[offCSRF:], rnd[16:])
	binary.BigEndian.PutUint64(p[offIssued:], uint64(issued))
	binary.BigEndian.PutUint64(p[offExpires:], uint64(expires))
	p = append(p, byte(len(userID)))
	p = append(p, userID...)
	p = append(p, byte(len(role)))
	p = append(p, role...)

	payload := b64.EncodeToString(p)
	s, _ = parseSession(p) // cannot fail: p was just built
	return payload + "." + k.sign(payload), s, nil
}

// VerifySession checks a token made by IssueSession with this key and
// returns its Session. A token that is malformed, altered in any byte or
// signed by another key gives ErrSessionInvalid; a genuine one whose
// ExpiresAt is not after now gives ErrSessionExpired. The signature is
// compared in constant time. Whether the session was revoked is for the
// caller to check, by Session.ID.
func (k *Key) VerifySession(token string, now time.Time) (Session, error) {
	if !k.valid() {
		return Session{}, errZeroKey
	}
	if len(token) > maxTokenLen {
		return Session{}, fmt.Errorf("%w: too long", ErrSessionInvalid)
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok {
		return Session{}, fmt.Errorf("%w: no signature", ErrSessionInvalid)
	}
	if subtle.ConstantTimeCompare([]byte(sig), []byte(k.sign(payload))) != 1 {
		return Session{}, fmt.Errorf("%w: bad signature", ErrSessionInvalid)
	}
	// Past this point the payload is one this key signed.
	p, err := b64.DecodeString(payload)
	if err != nil {
		return Session{}, fmt.Errorf("%w: payload is not base64url", ErrSessionInvalid)
	}
	s, err := parseSession(p)
	if err != nil {
		return Session{}, fmt.Errorf("%w: %v", ErrSessionInvalid, err)
	}
	if !now.Before(s.ExpiresAt) {
		return Session{}, fmt.Errorf("%w at %s", ErrSessionExpired, s.ExpiresAt.Format(time.RFC3339))
	}
	return s, nil
}

// sign returns the base64url HMAC of a payload's text.
func (k *Key) sign(payload string) string {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(payload))
	return b64.EncodeToString(m.Sum(nil))
}

// parseSession decodes a payload laid out as IssueSession describes.
func parseSession(p []byte) (Session, error) {
	if len(p) < offUser+2 {
		return Session{}, errors.New("payload too short")
	}
	if p[0] != sessionVersion {
		return Session{}, fmt.Errorf("unknown payload version %d", p[0])
	}
	rest := p[offUser:]
	userID, rest, ok1 := lengthPrefixed(rest)
	role, rest, ok2 := lengthPrefixed(rest)
	if !ok1 || !ok2 || len(rest) != 0 {
		return Session{}, errors.New("bad field lengths")
	}
	return Session{
		ID:        hex.EncodeToString(p[offID:offCSRF]),
		UserID:    userID,
		Role:      role,
		IssuedAt:  time.Unix(int64(binary.BigEndian.Uint64(p[offIssued:])), 0).UTC(),
		ExpiresAt: time.Unix(int64(binary.BigEndian.Uint64(p[offExpires:])), 0).UTC(),
		CSRF:      hex.EncodeToString(p[offCSRF:offIssued]),
	}, nil
}

// lengthPrefixed splits a field with a one-byte length off the front of p.
func lengthPrefixed(p []byte) (field string, rest []byte, ok bool) {
	if len(p) < 1 || len(p)-1 < int(p[0]) {
		return "", nil, false
	}
	n := int(p[0])
	return string(p[1 : 1+n]), p[1+n:], true
}

// CheckCSRF reports whether header, the CSRF token a request sent, is the
// session's. The comparison takes the same time wherever the two differ.
// A session without a CSRF token matches nothing.
func CheckCSRF(s Session, header string) bool {
	if s.CSRF == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(header)) == 1
}
