// Package secrets holds the proxy's cryptography: the master key and what
// is derived from it, encryption of provider secrets at rest, signed
// dashboard sessions, client API keys and password hashes.
//
// # The master key
//
// Every deployment has one master key of 32 random bytes. It is given as
// LLMPROXY_ENCRYPTION_KEY or kept in a file named by [security]
// encryption_key_file, written either as 64 hex characters or as base64
// (standard or URL alphabet, padded or not); `llm-proxy keygen
// --encryption-key` prints a new one. The master key itself is never used
// directly: HKDF-SHA256 derives one subkey for encrypting secrets and
// another for signing sessions, so the two uses never share key bytes and a
// weakness in one cannot spill into the other.
//
// Losing the master key loses every secret encrypted with it; changing it
// logs every dashboard user out. [Reseal] moves stored secrets from an old
// key to a new one.
//
// # Secrets at rest
//
// [Key.Seal] encrypts a value with AES-256-GCM under a fresh random 96-bit
// nonce. The sealed form is
//
//	version (1 byte, = 1) || nonce (12 bytes) || ciphertext || tag (16 bytes)
//
// so it is 29 bytes longer than the plaintext. The caller passes additional
// data that names where the value belongs, such as the provider's id: it is
// not stored, but [Key.Open] fails unless it is given the same bytes, so a
// ciphertext copied to another row does not decrypt. With random nonces one
// key must not seal more than 2^32 values, far beyond any proxy's count of
// provider secrets.
//
// # Sessions
//
// A dashboard session is a stateless signed token; see [Key.IssueSession]
// for its format. The token proves who logged in and until when. Logging
// out before the token expires needs a server-side list of revoked
// [Session.ID]s, which is the caller's to keep. Each session carries a
// random CSRF token that the dashboard sends back in a header on every
// state-changing request, checked with [CheckCSRF].
//
// # API keys and passwords
//
// Client API keys are high-entropy random strings, so a plain SHA-256 is
// enough to store them and lets the proxy find a key by its hash in one
// lookup ([NewAPIKey], [HashAPIKey]). Passwords are chosen by people and
// are hashed with bcrypt at cost [BcryptCost] ([HashPassword]); a login
// for an unknown user still spends the time of one bcrypt comparison
// ([CheckPasswordOrDummy]) so that the response time does not reveal which
// users exist.
//
// Every function here is safe for concurrent use, and a [Key] may be shared
// freely once made.
package secrets

import "errors"

// Errors of this package. They are returned wrapped, with details, and are
// matched with errors.Is.
var (
	// ErrNoKey: no master key was configured at all.
	ErrNoKey = errors.New("no encryption key configured: set LLMPROXY_ENCRYPTION_KEY or [security] encryption_key_file; " + keygenHint)
	// ErrInvalidKey: the key text is not 32 bytes in hex or base64.
	ErrInvalidKey = errors.New("invalid encryption key")
	// ErrKeyFileMode: the key file may be read or written by users other
	// than its owner.
	ErrKeyFileMode = errors.New("key file is accessible to group or others")
	// ErrDecrypt: a sealed value is corrupted, was sealed with another key,
	// or is opened with other additional data. The three cases cannot be
	// told apart, by design.
	ErrDecrypt = errors.New("cannot decrypt: wrong key, wrong additional data, or corrupted value")
	// ErrSessionInvalid: a session token is malformed or its signature does
	// not match.
	ErrSessionInvalid = errors.New("invalid session token")
	// ErrSessionExpired: a genuine session token whose time is up.
	ErrSessionExpired = errors.New("session expired")
	// ErrPasswordTooShort and ErrPasswordTooLong: a new password has
	// fewer than MinPasswordLen or more than MaxPasswordLen bytes.
	ErrPasswordTooShort = errors.New("password too short")
	ErrPasswordTooLong  = errors.New("password too long")
)

// errZeroKey is returned by the methods of a Key that was not made by
// ParseKey or LoadKey. Refusing it matters most for sessions: the zero
// value's signing key would be all zeros, which anyone can sign with.
var errZeroKey = errors.New("secrets: zero Key used; make keys with ParseKey or LoadKey")

// keygenHint ends every message about a missing or malformed key.
const keygenHint = "generate one with `llm-proxy keygen --encryption-key`"
