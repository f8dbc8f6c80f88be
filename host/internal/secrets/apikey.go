package secrets

import (
	"crypto/sha256"
	"fmt"
	"unicode/utf8"
)

// Client API keys look like
//
//	sk-lp-4fQ0cz1K7dHnA9tWbXy2LmPq8RsUvE3gJ6oZiN5k
//
// APIKeyTag followed by APIKeyRandomLen characters drawn uniformly from
// [0-9A-Za-z], about 238 bits of randomness. The tag lets people and
// secret scanners recognise a key, and the proxy tell one from another
// kind of credential.
const (
	APIKeyTag       = "sk-lp-"
	APIKeyRandomLen = 40
	// APIKeyPrefixLen is how much of a key is kept in clear to show in
	// lists: the tag and the first six random characters.
	APIKeyPrefixLen = 12
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewAPIKey makes a new client API key. key is shown to its owner once and
// never stored; prefix (the first APIKeyPrefixLen characters) is stored to
// tell keys apart in lists; hash (HashAPIKey(key)) is stored to recognise
// the key when a client sends it.
func NewAPIKey() (key, prefix string, hash [32]byte) {
	key = APIKeyTag + randomBase62(APIKeyRandomLen)
	return key, key[:APIKeyPrefixLen], HashAPIKey(key)
}

// HashAPIKey returns the SHA-256 of a whole API key, the form in which
// keys are stored and looked up. A fast hash is right here, unlike for
// passwords: the keys are random and too long to guess, so slowing the
// hash would protect nothing and would cost every request.
//
// It runs on every request, so a key of ordinary length is copied to the
// stack rather than converted with []byte(key), which allocates once the
// string is longer than 32 bytes.
func HashAPIKey(key string) [32]byte {
	var buf [128]byte
	if len(key) <= len(buf) {
		return sha256.Sum256(append(buf[:0], key...))
	}
	return sha256.Sum256([]byte(key))
}

// randomBase62 returns n characters drawn uniformly from base62. Bytes of
// 248 and over are discarded so that every character is equally likely
// (248 = 4 × 62).
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	for len(out) < n {
		for _, b := range randomBytes(n - len(out) + 8) {
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

// MinAdminKeyLen and MinAdminKeyDistinct are the least an admin key must
// have: characters in all, and different characters among them. A key
// from `llm-proxy keygen` has 60 characters, 48 of them random hex digits.
const (
	MinAdminKeyLen      = 32
	MinAdminKeyDistinct = 12
)

// CheckAdminKey reports why an admin key is too weak to accept, or nil.
// The admin key opens everything, and unlike a password it is never
// slowed down by a hash, so it must be long and random: the check refuses
// short keys and long ones made of a few characters repeated. It cannot
// tell a random key from a long phrase, which stays the operator's part.
func CheckAdminKey(key string) error {
	if n := utf8.RuneCountInString(key); n < MinAdminKeyLen {
		return fmt.Errorf("it has %d characters, at least %d are needed", n, MinAdminKeyLen)
	}
	seen := map[rune]struct{}{}
	for _, r := range key {
		seen[r] = struct{}{}
	}
	if len(seen) < MinAdminKeyDistinct {
		return fmt.Errorf("it has only %d different characters, at least %d are needed", len(seen), MinAdminKeyDistinct)
	}
	return nil
}
