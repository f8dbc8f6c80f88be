package secrets

import "fmt"

// sealVersion is the first byte of every sealed value. A future format
// gets a new number, and Open keeps reading the old ones.
const sealVersion = 1

// SealOverhead is how many bytes Seal adds to a plaintext: the version
// byte, the 12-byte nonce and the 16-byte tag.
const SealOverhead = 1 + 12 + 16

// Seal encrypts plaintext with AES-256-GCM under the encryption subkey and
// a fresh random nonce, so sealing the same value twice gives different
// results. additionalData is authenticated but not stored: pass what ties
// the value to its place (a provider's id, say) and give the same bytes to
// Open. The result is SealOverhead bytes longer than plaintext; its layout
// is described in the package documentation.
func (k *Key) Seal(plaintext, additionalData []byte) ([]byte, error) {
	if !k.valid() {
		return nil, errZeroKey
	}
	out := make([]byte, 1, SealOverhead+len(plaintext))
	out[0] = sealVersion
	// The AEAD draws the nonce and writes it before the ciphertext.
	return k.aead.Seal(out, nil, plaintext, additionalData), nil
}

// Open decrypts a value made by Seal with the same key and additional
// data. Any change to the sealed bytes, another key or other additional
// data gives ErrDecrypt, with no hint of which it was.
func (k *Key) Open(sealed, additionalData []byte) ([]byte, error) {
	if !k.valid() {
		return nil, errZeroKey
	}
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("%w: %d bytes is too short to be a sealed value", ErrDecrypt, len(sealed))
	}
	if sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrDecrypt, sealed[0])
	}
	plaintext, err := k.aead.Open(nil, nil, sealed[1:], additionalData)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// Reseal re-encrypts a sealed value from the key from to the key to, with
// the same additional data, for rotating the master key. The plaintext is
// held only for the duration of the call and wiped afterwards. If the
// value does not open under from, the error is ErrDecrypt.
func Reseal(from, to *Key, sealed, additionalData []byte) ([]byte, error) {
	plaintext, err := from.Open(sealed, additionalData)
	if err != nil {
		return nil, err
	}
	defer clear(plaintext)
	return to.Seal(plaintext, additionalData)
}
