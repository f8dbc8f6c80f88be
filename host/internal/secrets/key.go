package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// KeySize is the length of the master key in bytes.
const KeySize = 32

// HKDF info strings, one per use of the master key. Changing one changes
// the derived subkey, which makes every value made with the old one
// unreadable: add a new string for a new use, never edit these.
const (
	infoEncryption = "llm-proxy/secrets v1 encryption"
	infoSessions   = "llm-proxy/secrets v1 sessions"
	infoDevices    = "llm-proxy/secrets v1 devices"
)

// maxKeyFileSize bounds what LoadKey reads from a key file. A key is at
// most 64 characters plus a newline; anything much bigger is the wrong
// file.
const maxKeyFileSize = 1024

// Key is the master key, ready for use. It holds only the subkeys derived
// from the 32 master bytes, not the bytes themselves. A Key is immutable
// and safe for concurrent use; make one with ParseKey or LoadKey (the zero
// value is refused by every method).
//
// A Key never prints its contents: fmt shows it as "secrets.Key(redacted)"
// whatever the verb, so logging one by mistake leaks nothing.
type Key struct {
	aead cipher.AEAD // AES-256-GCM under the encryption subkey, nonces drawn at random
	mac  []byte      // HMAC-SHA256 key for session tokens
	dev  []byte      // HMAC-SHA256 key for device tokens
}

// ParseKey reads a master key written as 64 hex characters or as the
// base64 of 32 bytes, in the standard or URL alphabet, with or without
// '=' padding. Whitespace around the key (such as a file's final newline)
// is ignored. Errors say what was wrong but never echo the text.
func ParseKey(s string) (*Key, error) {
	raw, err := decodeKey(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: %v; %s", ErrInvalidKey, err, keygenHint)
	}
	defer clear(raw)
	return newKey(raw)
}

// decodeKey turns the text of a key into its bytes. Hex is tried first: a
// 64-character hex key is also valid base64 (of 48 bytes), while a genuine
// 32-byte base64 key has 43 characters (an odd count) or 44 ending in '='
// and so is never taken for hex.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("the key is empty")
	}
	allHex := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isHexDigit(c):
		case c >= 'g' && c <= 'z', c >= 'G' && c <= 'Z', c == '+', c == '/', c == '-', c == '_', c == '=':
			allHex = false
		default:
			// Say where, not what: the text is secret.
			return nil, fmt.Errorf("character %d is neither hex nor base64", i+1)
		}
	}
	if allHex && len(s)%2 == 0 {
		if len(s) != 2*KeySize {
			return nil, fmt.Errorf("hex decodes to %d bytes, need %d (%d hex characters)", len(s)/2, KeySize, 2*KeySize)
		}
		return hex.DecodeString(s)
	}

	std, url := strings.ContainsAny(s, "+/"), strings.ContainsAny(s, "-_")
	if std && url {
		return nil, errors.New("mixes the standard (+ /) and URL (- _) base64 alphabets")
	}
	enc := base64.RawStdEncoding
	if url {
		enc = base64.RawURLEncoding
	}
	if strings.HasSuffix(s, "=") {
		enc = enc.WithPadding(base64.StdPadding)
	}
	b, err := enc.DecodeString(s)
	switch {
	case err != nil && allHex:
		return nil, fmt.Errorf("has %d hex characters, need %d", len(s), 2*KeySize)
	case err != nil:
		// The decoder's error names a byte offset only.
		return nil, fmt.Errorf("not valid hex or base64: %v", err)
	case len(b) != KeySize && allHex:
		return nil, fmt.Errorf("has %d hex characters, need %d", len(s), 2*KeySize)
	case len(b) != KeySize:
		return nil, fmt.Errorf("base64 decodes to %d bytes, need %d", len(b), KeySize)
	}
	return b, nil
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// newKey derives the subkeys from the master bytes. No salt is used: the
// master key is already uniformly random, which is the case where RFC 5869
// allows HKDF without one.
func newKey(master []byte) (*Key, error) {
	encKey, err := hkdf.Key(sha256.New, master, nil, infoEncryption, 32)
	if err != nil {
		return nil, fmt.Errorf("derive encryption key: %w", err)
	}
	defer clear(encKey)
	macKey, err := hkdf.Key(sha256.New, master, nil, infoSessions, 32)
	if err != nil {
		return nil, fmt.Errorf("derive session key: %w", err)
	}
	devKey, err := hkdf.Key(sha256.New, master, nil, infoDevices, 32)
	if err != nil {
		return nil, fmt.Errorf("derive device key: %w", err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &Key{aead: aead, mac: macKey, dev: devKey}, nil
}

// valid reports whether k was made by newKey.
func (k *Key) valid() bool {
	return k != nil && k.aead != nil && len(k.mac) == 32 && len(k.dev) == 32
}

// Format keeps the key out of logs and error messages. Its receiver is a
// value so that a copied Key is covered too.
func (Key) Format(f fmt.State, verb rune) {
	io.WriteString(f, "secrets.Key(redacted)")
}

// LoadKey finds the master key. A non-empty envValue (the value of
// LLMPROXY_ENCRYPTION_KEY) wins; otherwise the key is read from filePath
// (the setting [security] encryption_key_file). When both are empty the
// error is ErrNoKey, whose message tells the operator what to set.
//
// The key file must not be readable or writable by group or others: a
// mode such as 0644 is refused with ErrKeyFileMode and a message naming
// the file and the `chmod 600` that fixes it (for a Kubernetes secret
// volume, set defaultMode to 0400). The check is skipped on Windows, where
// Unix modes mean nothing. A file that does not exist is an error that
// matches fs.ErrNotExist, so a caller may choose to create one with
// WriteKeyFile.
func LoadKey(envValue, filePath string) (*Key, error) {
	if envValue != "" {
		k, err := ParseKey(envValue)
		if err != nil {
			return nil, fmt.Errorf("LLMPROXY_ENCRYPTION_KEY: %w", err)
		}
		return k, nil
	}
	if filePath == "" {
		return nil, ErrNoKey
	}
	text, err := readKeyFile(filePath)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(text)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", filePath, err)
	}
	return k, nil
}

// readKeyFile reads a key file after checking, on the open file itself,
// that it is a regular file only its owner can access.
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return "", fmt.Errorf("%w: %s has mode %04o; run `chmod 600 %s`", ErrKeyFileMode, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	if len(b) > maxKeyFileSize {
		return "", fmt.Errorf("key file %s is over %d bytes; it should hold only the key", path, maxKeyFileSize)
	}
	return string(b), nil
}

// NewKeyString returns a new random master key as 64 hex characters, in
// the form ParseKey reads.
func NewKeyString() string {
	return hex.EncodeToString(randomBytes(KeySize))
}

// WriteKeyFile creates the file at path holding a new random master key
// and a newline, with mode 0600. It never replaces an existing file: if
// path exists the error matches fs.ErrExist and the file is untouched.
// Missing parent directories are created with mode 0700; existing ones
// keep their mode. If writing fails, the new file is removed.
func WriteKeyFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	// The umask can only have narrowed the mode; make it exactly 0600.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(NewKeyString() + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return nil
}

// randomBytes returns n bytes from crypto/rand, which never fails in
// Go 1.24 and later (it crashes the program instead).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
