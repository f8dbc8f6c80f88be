package secrets

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
)

// IssueDevice makes a device token: proof that the browser holding it
// once signed in as account (a name, compared without regard to case).
// Login throttling uses it to let a known browser in while strangers
// guessing that account's password are slowed down.
//
// A token is base64url(16 random bytes) "." base64url(HMAC-SHA256(device
// subkey, those bytes || 0 || lower-case account)). The subkey is not the
// session subkey, so a device token is never a valid session token, nor
// the other way round.
func (k *Key) IssueDevice(account string) (token string, err error) {
	if !k.valid() {
		return "", errZeroKey
	}
	id := b64.EncodeToString(randomBytes(16))
	return id + "." + k.deviceMAC(id, account), nil
}

// VerifyDevice reports whether token was made by IssueDevice with this key
// for account, and returns the token's random id.
func (k *Key) VerifyDevice(token, account string) (id string, ok bool) {
	if !k.valid() || len(token) > 128 {
		return "", false
	}
	id, sig, found := strings.Cut(token, ".")
	if !found || len(id) != 22 {
		return "", false
	}
	if !hmac.Equal([]byte(sig), []byte(k.deviceMAC(id, account))) {
		return "", false
	}
	return id, true
}

func (k *Key) deviceMAC(id, account string) string {
	m := hmac.New(sha256.New, k.dev)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(account)))
	return b64.EncodeToString(m.Sum(nil))
}
