package secrets

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Password hashing parameters. Lengths are in bytes of UTF-8, not
// characters; bcrypt reads no more than 72 bytes, so longer passwords are
// refused rather than silently cut.
const (
	BcryptCost     = 12
	MinPasswordLen = 8
	MaxPasswordLen = 72
)

// dummyHash is a bcrypt hash, at BcryptCost, of a random password nobody
// kept. CheckPasswordOrDummy compares against it when there is no real
// hash, so that the failure costs as much as a wrong password would. Its
// cost must follow BcryptCost (a test checks this).
var dummyHash = []byte("$2a$12$70rfEz35pbakrWnhTWp7dOyasXsjmqOFY/fEWYYJPTLyV9q8jsv5i")

// HashPassword returns the bcrypt hash of pw at BcryptCost, with a random
// salt, in the usual "$2a$12$..." text form. Passwords under
// MinPasswordLen or over MaxPasswordLen bytes are refused with
// ErrPasswordTooShort or ErrPasswordTooLong.
func HashPassword(pw string) (string, error) {
	if err := checkPasswordLen(pw); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), BcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// checkPasswordLen enforces MinPasswordLen and MaxPasswordLen.
func checkPasswordLen(pw string) error {
	switch {
	case len(pw) < MinPasswordLen:
		return fmt.Errorf("%w: %d bytes, need at least %d", ErrPasswordTooShort, len(pw), MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("%w: %d bytes, at most %d allowed (a non-ASCII character takes 2 to 4 bytes)", ErrPasswordTooLong, len(pw), MaxPasswordLen)
	}
	return nil
}

// CheckPassword reports whether pw matches a hash made by HashPassword.
// A malformed hash matches nothing, after the same work as a real
// comparison.
func CheckPassword(hash, pw string) bool {
	return checkPassword(bcrypt.CompareHashAndPassword, hash, true, pw)
}

// CheckPasswordOrDummy is CheckPassword for logins, where found says
// whether the user exists. For a missing user it still runs one bcrypt
// comparison, against dummyHash, and then returns false, so a failed login
// takes about the same time whether the name was right or not. Use it as
//
//	u, found := users.Lookup(name)
//	if !secrets.CheckPasswordOrDummy(u.PasswordHash, found, pw) { ... }
func CheckPasswordOrDummy(hash string, found bool, pw string) bool {
	return checkPassword(bcrypt.CompareHashAndPassword, hash, found, pw)
}

// checkPassword holds the logic of both checks, with the comparison passed
// in so a test can see that it runs on every path. Exactly one comparison
// is made: against the real hash when there is a well-formed one, else
// against dummyHash. Only the first can succeed.
func checkPassword(compare func(hash, pw []byte) error, hash string, found bool, pw string) bool {
	target := []byte(hash)
	genuine := found && isBcryptHash(target)
	if !genuine {
		target = dummyHash
	}
	ok := compare(target, []byte(pw)) == nil
	// bcrypt ignores bytes past the 72nd, so a longer pw would match the
	// hash of its first 72. HashPassword refuses such passwords, so one
	// can never be right.
	return ok && genuine && len(pw) <= MaxPasswordLen
}

// isBcryptHash reports whether h parses as a bcrypt hash.
func isBcryptHash(h []byte) bool {
	_, err := bcrypt.Cost(h)
	return err == nil
}
