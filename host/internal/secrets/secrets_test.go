package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fixtureRaw is a master key whose base64 uses '+' and '/' (and so '-' and
// '_' in the URL alphabet), to exercise both alphabets.
var fixtureRaw = bytes.Repeat([]byte{0xfb, 0xef, 0xff}, 11)[:KeySize]

func fixtureKey(t testing.TB) *Key {
	t.Helper()
	k, err := ParseKey(hex.EncodeToString(fixtureRaw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func otherKey(t testing.TB) *Key {
	t.Helper()
	k, err := ParseKey(NewKeyString())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sameKey reports whether a and b hold the same subkeys, by sealing with
// one and opening with the other, and by checking a session across them.
func sameKey(t *testing.T, a, b *Key) bool {
	t.Helper()
	sealed, err := a.Seal([]byte("probe"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(sealed, nil); err != nil {
		return false
	}
	now := time.Unix(1_700_000_000, 0)
	tok, _, err := a.IssueSession("u", "r", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.VerifySession(tok, now)
	return err == nil
}

func TestParseKey(t *testing.T) {
	hexKey := hex.EncodeToString(fixtureRaw)
	std := base64.StdEncoding.EncodeToString(fixtureRaw)
	url := base64.URLEncoding.EncodeToString(fixtureRaw)
	if !strings.ContainsAny(std, "+/") || !strings.ContainsAny(url, "-_") || !strings.HasSuffix(std, "=") {
		t.Fatalf("fixture does not exercise both alphabets and padding: %s %s", std, url)
	}
	fixture := fixtureKey(t)

	good := []struct {
		name, in string
	}{
		{"hex lower", hexKey},
		{"hex upper", strings.ToUpper(hexKey)},
		{"base64 std padded", std},
		{"base64 std unpadded", strings.TrimRight(std, "=")},
		{"base64 url padded", url},
		{"base64 url unpadded", strings.TrimRight(url, "=")},
		{"surrounding whitespace", " \t" + hexKey + "\r\n"},
		{"trailing newline base64", std + "\n"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.in)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !sameKey(t, k, fixture) {
				t.Fatal("parsed key differs from the fixture")
			}
		})
	}

	b64of := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, n)) }
	bad := []struct {
		name, in, want string
	}{
		{"empty", "", "the key is empty"},
		{"only whitespace", " \n\t", "the key is empty"},
		{"hex of 16 bytes", hexKey[:32], "hex decodes to 16 bytes, need 32"},
		{"hex of 33 bytes", hexKey + "ab", "hex decodes to 33 bytes, need 32"},
		{"hex one character short", hexKey[:63], "has 63 hex characters, need 64"},
		{"hex one character long", hexKey + "a", "has 65 hex characters, need 64"},
		{"base64 of 16 bytes", b64of(16), "base64 decodes to 16 bytes, need 32"},
		{"base64 of 16 bytes unpadded", strings.TrimRight(b64of(16), "="), "base64 decodes to 16 bytes, need 32"},
		{"base64 of 31 bytes", b64of(31), "base64 decodes to 31 bytes, need 32"},
		{"base64 of 33 bytes", b64of(33), "base64 decodes to 33 bytes, need 32"},
		{"0x prefix", "0x" + hexKey, "base64 decodes to 49 bytes"},
		{"garbage", "not a key at all!", "character 4 is neither hex nor base64"},
		{"inner whitespace", hexKey[:32] + " " + hexKey[32:], "character 33 is neither hex nor base64"},
		{"inner newline", std[:20] + "\n" + std[20:], "character 21 is neither hex nor base64"},
		{"non-ASCII", "ключ" + hexKey, "character 1 is neither hex nor base64"},
		{"mixed alphabets", strings.TrimRight(std, "=") + "-", "mixes the standard"},
		{"bad padding", std + "=", "not valid hex or base64"},
		{"padding in the middle", std[:8] + "=" + std[9:], "not valid hex or base64"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.in)
			if err == nil {
				t.Fatalf("ParseKey(%q) = %v, want an error", tc.in, k)
			}
			if !errors.Is(err, ErrInvalidKey) {
				t.Errorf("error %v does not match ErrInvalidKey", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if !strings.Contains(msg, "llm-proxy keygen --encryption-key") {
				t.Errorf("error %q does not say how to make a key", msg)
			}
			if s := strings.TrimSpace(tc.in); len(s) >= 16 && strings.Contains(msg, s[:16]) {
				t.Errorf("error %q echoes the key text", msg)
			}
		})
	}
}

func TestKeyDerivation(t *testing.T) {
	k := fixtureKey(t)
	encKey, err := hkdf.Key(sha256.New, fixtureRaw, nil, infoEncryption, 32)
	if err != nil {
		t.Fatal(err)
	}
	macKey, err := hkdf.Key(sha256.New, fixtureRaw, nil, infoSessions, 32)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("subkeys differ from each other and from the master", func(t *testing.T) {
		if bytes.Equal(encKey, macKey) || bytes.Equal(encKey, fixtureRaw) || bytes.Equal(macKey, fixtureRaw) {
			t.Fatal("subkeys share bytes")
		}
		if !bytes.Equal(k.mac, macKey) {
			t.Fatal("session key is not HKDF(master, sessions)")
		}
	})

	t.Run("sealed format is version, nonce, AES-GCM under the encryption subkey", func(t *testing.T) {
		sealed, err := k.Seal([]byte("sk-upstream"), []byte("provider:7"))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := aes.NewCipher(encKey)
		gcm, _ := cipher.NewGCM(block)
		if sealed[0] != 1 {
			t.Fatalf("version byte %d", sealed[0])
		}
		pt, err := gcm.Open(nil, sealed[1:13], sealed[13:], []byte("provider:7"))
		if err != nil || string(pt) != "sk-upstream" {
			t.Fatalf("manual open: %q, %v", pt, err)
		}
	})
}

func TestKeyRedacted(t *testing.T) {
	k := fixtureKey(t)
	const want = "secrets.Key(redacted)"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		t.Run(verb, func(t *testing.T) {
			if got := fmt.Sprintf(verb, k); got != want {
				t.Errorf("Sprintf(%s) = %q", verb, got)
			}
		})
	}
	t.Run("copied value", func(t *testing.T) {
		if got := fmt.Sprintf("%+v", *k); got != want {
			t.Errorf("got %q", got)
		}
	})
	t.Run("nil", func(t *testing.T) {
		var nk *Key
		if got := fmt.Sprint(nk); strings.Contains(got, "aead") {
			t.Errorf("got %q", got)
		}
	})
	t.Run("inside a struct", func(t *testing.T) {
		got := fmt.Sprintf("%+v", struct{ K *Key }{k})
		if got != "{K:"+want+"}" {
			t.Errorf("got %q", got)
		}
	})
}

func TestZeroKeyRefused(t *testing.T) {
	for name, k := range map[string]*Key{"nil": nil, "zero value": {}} {
		t.Run(name, func(t *testing.T) {
			if _, err := k.Seal([]byte("x"), nil); err == nil {
				t.Error("Seal succeeded")
			}
			if _, err := k.Open(make([]byte, 64), nil); err == nil {
				t.Error("Open succeeded")
			}
			if _, _, err := k.IssueSession("u", "r", time.Hour, time.Now()); err == nil {
				t.Error("IssueSession succeeded")
			}
			if _, err := k.VerifySession("a.b", time.Now()); err == nil {
				t.Error("VerifySession succeeded")
			}
		})
	}
}

// writeFile writes a file with exactly the given mode, whatever the umask.
func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	fixture := fixtureKey(t)
	good := filepath.Join(dir, "good")
	writeFile(t, good, hex.EncodeToString(fixtureRaw)+"\n", 0o600)

	t.Run("env wins over the file", func(t *testing.T) {
		other := NewKeyString()
		k, err := LoadKey(other, good)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ParseKey(other)
		if !sameKey(t, k, want) || sameKey(t, k, fixture) {
			t.Fatal("key did not come from the environment")
		}
	})
	t.Run("bad env is an error even with a good file", func(t *testing.T) {
		_, err := LoadKey("tooshort", good)
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "LLMPROXY_ENCRYPTION_KEY") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("file when env is empty", func(t *testing.T) {
		k, err := LoadKey("", good)
		if err != nil {
			t.Fatal(err)
		}
		if !sameKey(t, k, fixture) {
			t.Fatal("key did not come from the file")
		}
	})
	t.Run("file readable by its owner only", func(t *testing.T) {
		p := filepath.Join(dir, "readonly")
		writeFile(t, p, std64(fixtureRaw), 0o400)
		if _, err := LoadKey("", p); err != nil {
			t.Fatal(err)
		}
	})
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606} {
		t.Run(fmt.Sprintf("mode %04o refused", mode), func(t *testing.T) {
			if runtime.GOOS == "windows" {
				t.Skip("no Unix modes on Windows")
			}
			p := filepath.Join(dir, fmt.Sprintf("open-%o", mode))
			writeFile(t, p, hex.EncodeToString(fixtureRaw), mode)
			_, err := LoadKey("", p)
			if !errors.Is(err, ErrKeyFileMode) {
				t.Fatalf("got %v, want ErrKeyFileMode", err)
			}
			for _, want := range []string{p, "chmod 600", fmt.Sprintf("%04o", mode)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadKey("", filepath.Join(dir, "absent"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("file with a bad key", func(t *testing.T) {
		p := filepath.Join(dir, "bad")
		writeFile(t, p, "abcd\n", 0o600)
		_, err := LoadKey("", p)
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), p) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		p := filepath.Join(dir, "adir")
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKey("", p)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("oversized file", func(t *testing.T) {
		p := filepath.Join(dir, "big")
		writeFile(t, p, hex.EncodeToString(fixtureRaw)+strings.Repeat("\n", 2000), 0o600)
		_, err := LoadKey("", p)
		if err == nil || !strings.Contains(err.Error(), "over 1024 bytes") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("neither", func(t *testing.T) {
		_, err := LoadKey("", "")
		if !errors.Is(err, ErrNoKey) {
			t.Fatalf("got %v, want ErrNoKey", err)
		}
		for _, want := range []string{"LLMPROXY_ENCRYPTION_KEY", "[security] encryption_key_file", "llm-proxy keygen --encryption-key"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})
}

func std64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestNewKeyString(t *testing.T) {
	a, b := NewKeyString(), NewKeyString()
	if len(a) != 64 || a == b {
		t.Fatalf("NewKeyString gave %q and %q", a, b)
	}
	if _, err := ParseKey(a); err != nil {
		t.Fatal(err)
	}
}

func TestWriteKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	path := filepath.Join(dir, "encryption-key")

	t.Run("creates the file and its directory", func(t *testing.T) {
		if err := WriteKeyFile(path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 65 || b[64] != '\n' {
			t.Fatalf("content %q is not 64 hex characters and a newline", b)
		}
		if _, err := LoadKey("", path); err != nil {
			t.Fatalf("LoadKey of the new file: %v", err)
		}
		if runtime.GOOS == "windows" {
			return
		}
		for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s has mode %04o, want %04o", p, got, want)
			}
		}
	})
	t.Run("never overwrites", func(t *testing.T) {
		before, _ := os.ReadFile(path)
		err := WriteKeyFile(path)
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("second WriteKeyFile: %v, want fs.ErrExist", err)
		}
		after, _ := os.ReadFile(path)
		if !bytes.Equal(before, after) {
			t.Fatal("existing key file was changed")
		}
	})
	t.Run("leaves any existing file alone", func(t *testing.T) {
		p := filepath.Join(dir, "mine")
		writeFile(t, p, "precious", 0o644)
		if err := WriteKeyFile(p); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("got %v", err)
		}
		if b, _ := os.ReadFile(p); string(b) != "precious" {
			t.Fatalf("file now holds %q", b)
		}
	})
	t.Run("each file gets a new key", func(t *testing.T) {
		p := filepath.Join(dir, "second")
		if err := WriteKeyFile(p); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(path)
		b, _ := os.ReadFile(p)
		if bytes.Equal(a, b) {
			t.Fatal("two key files hold the same key")
		}
	})
}

func TestSealOpen(t *testing.T) {
	k := fixtureKey(t)
	ad := []byte("provider:openai")

	for _, tc := range []struct {
		name string
		pt   []byte
		ad   []byte
	}{
		{"empty plaintext", []byte{}, ad},
		{"short", []byte("sk-abc"), ad},
		{"no additional data", []byte("sk-abc"), nil},
		{"large", bytes.Repeat([]byte{7}, 64<<10), ad},
	} {
		t.Run("round trip "+tc.name, func(t *testing.T) {
			sealed, err := k.Seal(tc.pt, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed) != len(tc.pt)+SealOverhead || sealed[0] != 1 {
				t.Fatalf("sealed %d bytes, version %d", len(sealed), sealed[0])
			}
			if len(tc.pt) > 0 && bytes.Contains(sealed, tc.pt) {
				t.Fatal("plaintext visible in sealed value")
			}
			got, err := k.Open(sealed, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.pt) {
				t.Fatal("round trip changed the value")
			}
		})
	}

	t.Run("fresh nonce every time", func(t *testing.T) {
		nonces := make(map[string]bool)
		sealedSeen := make(map[string]bool)
		for range 1000 {
			sealed, err := k.Seal([]byte("same"), ad)
			if err != nil {
				t.Fatal(err)
			}
			nonce := string(sealed[1:13])
			if nonces[nonce] || sealedSeen[string(sealed)] {
				t.Fatal("nonce or sealed value repeated")
			}
			nonces[nonce], sealedSeen[string(sealed)] = true, true
		}
	})

	sealed, err := k.Seal([]byte("sk-live-secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("every byte position is protected", func(t *testing.T) {
		for i := range sealed {
			for _, flip := range []byte{0x01, 0x80, 0xff} {
				c := bytes.Clone(sealed)
				c[i] ^= flip
				if _, err := k.Open(c, ad); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("byte %d ^ %#x: got %v, want ErrDecrypt", i, flip, err)
				}
			}
		}
	})
	t.Run("truncated or extended", func(t *testing.T) {
		for n := range len(sealed) {
			if _, err := k.Open(sealed[:n], ad); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("first %d bytes: got %v", n, err)
			}
		}
		if _, err := k.Open(append(bytes.Clone(sealed), 0), ad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("extra byte: got %v", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		if _, err := otherKey(t).Open(sealed, ad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong additional data", func(t *testing.T) {
		for _, wrong := range [][]byte{nil, []byte("provider:groq"), []byte("provider:openai "), ad[:len(ad)-1]} {
			if _, err := k.Open(sealed, wrong); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("ad %q: got %v", wrong, err)
			}
		}
	})
	t.Run("another instance of the same key opens it", func(t *testing.T) {
		if _, err := fixtureKey(t).Open(sealed, ad); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReseal(t *testing.T) {
	oldK, newK := fixtureKey(t), otherKey(t)
	ad := []byte("provider:42")
	sealed, err := oldK.Seal([]byte("upstream-secret"), ad)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("moves the value to the new key", func(t *testing.T) {
		re, err := Reseal(oldK, newK, sealed, ad)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := newK.Open(re, ad); err != nil || string(got) != "upstream-secret" {
			t.Fatalf("new key: %q, %v", got, err)
		}
		if _, err := oldK.Open(re, ad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("old key still opens the resealed value: %v", err)
		}
		if _, err := newK.Open(re, []byte("provider:43")); !errors.Is(err, ErrDecrypt) {
			t.Fatal("resealed value lost its additional data")
		}
	})
	t.Run("wrong old key", func(t *testing.T) {
		if _, err := Reseal(newK, oldK, sealed, ad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong additional data", func(t *testing.T) {
		if _, err := Reseal(oldK, newK, sealed, []byte("provider:43")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestSessionRoundTrip(t *testing.T) {
	k := fixtureKey(t)
	now := t0.Add(750 * time.Millisecond) // cut to whole seconds
	tok, s, err := k.IssueSession("user-17", "admin", 8*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if !s.IssuedAt.Equal(t0) || !s.ExpiresAt.Equal(t0.Add(8*time.Hour)) {
		t.Errorf("times %v .. %v", s.IssuedAt, s.ExpiresAt)
	}
	if s.UserID != "user-17" || s.Role != "admin" {
		t.Errorf("fields %+v", s)
	}
	for name, v := range map[string]string{"ID": s.ID, "CSRF": s.CSRF} {
		if b, err := hex.DecodeString(v); err != nil || len(b) != 16 {
			t.Errorf("%s %q is not 16 bytes of hex", name, v)
		}
	}
	if s.ID == s.CSRF {
		t.Error("ID and CSRF are the same")
	}
	if strings.ContainsAny(tok, "+/= ") || strings.Count(tok, ".") != 1 {
		t.Errorf("token %q is not two base64url parts", tok)
	}

	got, err := k.VerifySession(tok, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got != s {
		t.Fatalf("verified %+v, issued %+v", got, s)
	}

	t.Run("another instance of the same key verifies it", func(t *testing.T) {
		if _, err := fixtureKey(t).VerifySession(tok, now); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("each session is new", func(t *testing.T) {
		tok2, s2, err := k.IssueSession("user-17", "admin", 8*time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if tok2 == tok || s2.ID == s.ID || s2.CSRF == s.CSRF {
			t.Fatal("two sessions share a token, ID or CSRF token")
		}
	})
	t.Run("longest fields and any bytes", func(t *testing.T) {
		user := strings.Repeat("ü", MaxSessionField/2) + "x" // 255 bytes
		role := strings.Repeat("\x00.", MaxSessionField/2) + "y"
		tok, s, err := k.IssueSession(user, role, time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) > maxTokenLen {
			t.Fatalf("token of %d characters exceeds maxTokenLen", len(tok))
		}
		got, err := k.VerifySession(tok, now)
		if err != nil || got != s || got.UserID != user || got.Role != role {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("empty role", func(t *testing.T) {
		tok, _, err := k.IssueSession("u", "", time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := k.VerifySession(tok, now); err != nil || s.Role != "" {
			t.Fatalf("got %+v, %v", s, err)
		}
	})
}

func TestSessionExpiry(t *testing.T) {
	k := fixtureKey(t)
	tok, s, err := k.IssueSession("u", "viewer", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		want error
	}{
		{"at issue", t0, nil},
		{"one second before expiry", s.ExpiresAt.Add(-time.Second), nil},
		{"a nanosecond before expiry", s.ExpiresAt.Add(-1), nil},
		{"at expiry", s.ExpiresAt, ErrSessionExpired},
		{"long after", s.ExpiresAt.Add(365 * 24 * time.Hour), ErrSessionExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.VerifySession(tok, tc.at)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil && got != (Session{}) {
				t.Fatalf("expired session returned %+v", got)
			}
		})
	}
}

func TestSessionIssueErrors(t *testing.T) {
	k := fixtureKey(t)
	for _, tc := range []struct {
		name, user, role string
		ttl              time.Duration
		want             string
	}{
		{"empty user", "", "admin", time.Hour, "empty user id"},
		{"long user", strings.Repeat("u", MaxSessionField+1), "admin", time.Hour, "user id is 256 bytes"},
		{"long role", "u", strings.Repeat("r", MaxSessionField+1), time.Hour, "role is 256 bytes"},
		{"zero ttl", "u", "admin", 0, "under one second"},
		{"negative ttl", "u", "admin", -time.Hour, "under one second"},
		{"sub-second ttl", "u", "admin", 999 * time.Millisecond, "under one second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := k.IssueSession(tc.user, tc.role, tc.ttl, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// signed makes a token for an arbitrary payload with k, as only the
// holder of the key could.
func signed(k *Key, payload []byte) string {
	p := b64.EncodeToString(payload)
	return p + "." + k.sign(p)
}

func TestSessionTampering(t *testing.T) {
	k := fixtureKey(t)
	tok, _, err := k.IssueSession("alice", "viewer", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	payload, sig, _ := strings.Cut(tok, ".")
	invalid := func(t *testing.T, tok string) {
		t.Helper()
		s, err := k.VerifySession(tok, t0)
		if !errors.Is(err, ErrSessionInvalid) {
			t.Fatalf("VerifySession(%q) = %+v, %v; want ErrSessionInvalid", tok, s, err)
		}
		if s != (Session{}) {
			t.Fatalf("invalid token returned %+v", s)
		}
	}

	t.Run("every character changed", func(t *testing.T) {
		const alphabet = "AQgw-_09azZ.=+/ \x00"
		for i := range len(tok) {
			for _, c := range []byte(alphabet) {
				if tok[i] == c {
					continue
				}
				invalid(t, tok[:i]+string(c)+tok[i+1:])
			}
		}
	})
	t.Run("payload rewritten to another role", func(t *testing.T) {
		p, err := b64.DecodeString(payload)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(p, []byte("viewer"))
		forged := append(append(bytes.Clone(p[:i-1]), 5), "admin"...)
		invalid(t, b64.EncodeToString(forged)+"."+sig)
	})
	t.Run("expiry pushed back", func(t *testing.T) {
		p, _ := b64.DecodeString(payload)
		p[offExpires] = 0x7f
		invalid(t, b64.EncodeToString(p)+"."+sig)
	})
	t.Run("signature from another key", func(t *testing.T) {
		other := otherKey(t)
		tok2, _, err := other.IssueSession("alice", "viewer", time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		invalid(t, tok2)
		p2, _, _ := strings.Cut(tok2, ".")
		invalid(t, p2+"."+sig)
		invalid(t, payload+"."+other.sign(payload))
	})
	t.Run("signature truncated or extended", func(t *testing.T) {
		invalid(t, payload+"."+sig[:len(sig)-1])
		invalid(t, payload+"."+sig+"A")
		invalid(t, payload+"."+sig+"=")
		invalid(t, payload+".")
		invalid(t, payload+"."+sig+"."+sig)
	})
	t.Run("payload and signature swapped", func(t *testing.T) {
		invalid(t, sig+"."+payload)
	})
	t.Run("padded or wrapped", func(t *testing.T) {
		invalid(t, payload+"=."+sig)
		invalid(t, " "+tok)
		invalid(t, tok+"\n")
		invalid(t, strings.ToUpper(tok))
	})
	t.Run("garbage", func(t *testing.T) {
		for _, g := range []string{"", ".", "..", "abc", "a.b", "a.b.c", strings.Repeat("A", 5000), strings.Repeat("A", 500) + "." + strings.Repeat("B", 43)} {
			invalid(t, g)
		}
	})
	// A payload signed with the right key but malformed can only come from a
	// bug; it must still be refused, not panic.
	t.Run("signed but malformed payload", func(t *testing.T) {
		good, _ := b64.DecodeString(payload)
		wrongVersion := bytes.Clone(good)
		wrongVersion[0] = 2
		for name, p := range map[string][]byte{
			"empty":           {},
			"header only":     good[:offUser],
			"no role":         good[:offUser+1+len("alice")],
			"length too long": append(bytes.Clone(good[:offUser]), 200, 'a'),
			"trailing byte":   append(bytes.Clone(good), 0),
			"wrong version":   wrongVersion,
		} {
			t.Run(name, func(t *testing.T) { invalid(t, signed(k, p)) })
		}
	})
}

// The fuzzers need genuine inputs that are the same in every fuzzing
// process, so that "only the genuine input is accepted" can be asserted:
// IssueSession and Seal draw random ids and nonces, so these are built by
// hand with the fixture key.

// fixedToken is a genuine session token with fixed id and CSRF bytes.
func fixedToken(k *Key, now time.Time) string {
	p := []byte{sessionVersion}
	p = append(p, bytes.Repeat([]byte{0xa5}, 32)...)
	p = binary.BigEndian.AppendUint64(p, uint64(now.Unix()))
	p = binary.BigEndian.AppendUint64(p, uint64(now.Add(time.Hour).Unix()))
	p = append(p, 4, 'f', 'u', 'z', 'z', 5, 'a', 'd', 'm', 'i', 'n')
	return signed(k, p)
}

// fixedSealed is a genuine sealed value with a fixed nonce.
func fixedSealed(t testing.TB, plaintext, ad []byte) []byte {
	encKey, err := hkdf.Key(sha256.New, fixtureRaw, nil, infoEncryption, 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(encKey)
	gcm, _ := cipher.NewGCM(block)
	nonce := bytes.Repeat([]byte{0x3c}, 12)
	return gcm.Seal(append([]byte{sealVersion}, nonce...), nonce, plaintext, ad)
}

func FuzzVerifySession(f *testing.F) {
	k := fixtureKey(f)
	now := t0
	valid := fixedToken(k, now)
	if _, err := k.VerifySession(valid, now); err != nil {
		f.Fatalf("fixed token: %v", err)
	}
	p, s, _ := strings.Cut(valid, ".")
	for _, seed := range []string{
		valid, p, s, p + ".", "." + s, p + "." + s + ".", valid[1:], valid + "A",
		"", ".", "a.b", strings.Repeat(".", 100), "\xff\xfe.\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := k.VerifySession(tok, now)
		if err == nil {
			if tok != valid {
				t.Fatalf("forged token %q verified as %+v", tok, got)
			}
			return
		}
		if !errors.Is(err, ErrSessionInvalid) && !errors.Is(err, ErrSessionExpired) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	k := fixtureKey(f)
	ad := []byte("provider:fuzz")
	valid := fixedSealed(f, []byte("secret"), ad)
	if pt, err := k.Open(valid, ad); err != nil || string(pt) != "secret" {
		f.Fatalf("fixed sealed value: %q, %v", pt, err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(make([]byte, SealOverhead))
	f.Fuzz(func(t *testing.T, sealed []byte) {
		pt, err := k.Open(sealed, ad)
		if err == nil && !bytes.Equal(sealed, valid) {
			t.Fatalf("forged value opened to %q", pt)
		}
		if err != nil && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

func TestCheckCSRF(t *testing.T) {
	k := fixtureKey(t)
	_, s, err := k.IssueSession("u", "admin", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := k.IssueSession("u", "admin", time.Hour, t0)
	for _, tc := range []struct {
		name   string
		s      Session
		header string
		want   bool
	}{
		{"match", s, s.CSRF, true},
		{"empty header", s, "", false},
		{"another session's token", s, other.CSRF, false},
		{"prefix", s, s.CSRF[:31], false},
		{"extra character", s, s.CSRF + "0", false},
		{"upper case", s, strings.ToUpper(s.CSRF), strings.ToUpper(s.CSRF) == s.CSRF},
		{"surrounding space", s, " " + s.CSRF, false},
		{"session ID instead", s, s.ID, false},
		{"zero session, empty header", Session{}, "", false},
		{"zero session, some header", Session{}, "x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckCSRF(tc.s, tc.header); got != tc.want {
				t.Fatalf("CheckCSRF = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	k := fixtureKey(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			ad := []byte(fmt.Sprint("row-", g))
			for range 100 {
				sealed, err := k.Seal(ad, ad)
				if err == nil {
					_, err = k.Open(sealed, ad)
				}
				if err == nil {
					var tok string
					tok, _, err = k.IssueSession(string(ad), "r", time.Hour, t0)
					if err == nil {
						_, err = k.VerifySession(tok, t0)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAPIKeys(t *testing.T) {
	seen := make(map[string]bool)
	hashes := make(map[[32]byte]bool)
	chars := make(map[rune]bool)
	for range 1000 {
		key, prefix, hash := NewAPIKey()
		if seen[key] || hashes[hash] {
			t.Fatalf("key %q repeated", key)
		}
		seen[key], hashes[hash] = true, true
		if !strings.HasPrefix(key, "sk-lp-") || len(key) != len("sk-lp-")+40 {
			t.Fatalf("key %q has the wrong shape", key)
		}
		if prefix != key[:12] || !strings.HasPrefix(prefix, APIKeyTag) {
			t.Fatalf("prefix %q of %q", prefix, key)
		}
		if hash != sha256.Sum256([]byte(key)) || hash != HashAPIKey(key) {
			t.Fatalf("hash of %q is not its SHA-256", key)
		}
		for _, c := range key[len(APIKeyTag):] {
			if !strings.ContainsRune(base62, c) {
				t.Fatalf("key %q has %q outside base62", key, c)
			}
			chars[c] = true
		}
	}
	if len(chars) != 62 {
		t.Errorf("40000 random characters used only %d of the 62", len(chars))
	}
	if HashAPIKey("sk-lp-a") == HashAPIKey("sk-lp-b") {
		t.Error("different keys hash alike")
	}
}

func TestPasswordLength(t *testing.T) {
	for _, tc := range []struct {
		name string
		pw   string
		want error
	}{
		{"empty", "", ErrPasswordTooShort},
		{"seven bytes", "1234567", ErrPasswordTooShort},
		{"eight bytes", "12345678", nil},
		{"four two-byte characters", "éééé", nil},
		{"72 bytes", strings.Repeat("p", 72), nil},
		{"73 bytes", strings.Repeat("p", 73), ErrPasswordTooLong},
		{"37 two-byte characters", strings.Repeat("é", 37), ErrPasswordTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPasswordLen(tc.pw)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				// HashPassword refuses before hashing, so this is fast.
				if _, err := HashPassword(tc.pw); !errors.Is(err, tc.want) {
					t.Fatalf("HashPassword: %v", err)
				}
			}
		})
	}
}

// TestPasswordBcrypt runs bcrypt at full cost three times, about a
// quarter of a second each (ten times that under the race detector): to
// hash, to check that hash, and for the dummy comparison. Checks whose
// outcome does not depend on the cost use a hash at bcrypt.MinCost.
func TestPasswordBcrypt(t *testing.T) {
	pw := strings.Repeat("correct horse battery staple ", 3)[:MaxPasswordLen]
	hash, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != BcryptCost || BcryptCost != 12 {
		t.Fatalf("cost %d, %v; want 12", cost, err)
	}
	cheap, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hash, pw string
		found, want    bool
	}{
		{"right password", hash, pw, true, true},
		{"right password, cheap hash", string(cheap), pw, true, true},
		{"wrong password", string(cheap), pw[:MaxPasswordLen-1] + "X", true, false},
		// bcrypt alone would accept this: it ignores bytes past the 72nd.
		{"right password with more bytes", string(cheap), pw + "extra", true, false},
		{"missing user", "", pw, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckPasswordOrDummy(tc.hash, tc.found, tc.pw); got != tc.want {
				t.Errorf("CheckPasswordOrDummy = %v, want %v", got, tc.want)
			}
			if tc.found && tc.hash != hash { // spare a second full-cost run
				if got := CheckPassword(tc.hash, tc.pw); got != tc.want {
					t.Errorf("CheckPassword = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestDummyHash(t *testing.T) {
	cost, err := bcrypt.Cost(dummyHash)
	if err != nil || cost != BcryptCost {
		t.Fatalf("dummyHash has cost %d (%v), want BcryptCost %d so a missing user costs as much as a real one", cost, err, BcryptCost)
	}
}

// TestCheckPasswordPaths shows, with a stand-in for bcrypt, that every
// path makes exactly one comparison, against the dummy hash when there is
// no usable real one, and that only a real hash can succeed.
func TestCheckPasswordPaths(t *testing.T) {
	real, err := bcrypt.GenerateFromPassword([]byte("password1"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		hash     string
		found    bool
		pw       string
		cmpOK    bool   // what the stand-in comparison returns
		wantHash []byte // the hash it must be given
		want     bool
	}{
		{"user found, right password", string(real), true, "password1", true, real, true},
		{"user found, wrong password", string(real), true, "password2", false, real, false},
		{"user missing", "", false, "password1", false, dummyHash, false},
		{"user missing, even if the dummy matched", "", false, "password1", true, dummyHash, false},
		{"user missing, hash passed anyway", string(real), false, "password1", true, dummyHash, false},
		{"user found with an empty hash", "", true, "password1", true, dummyHash, false},
		{"user found with a malformed hash", "plaintext!", true, "password1", true, dummyHash, false},
		{"password over 72 bytes", string(real), true, strings.Repeat("p", 73), true, real, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			cmp := func(hash, pw []byte) error {
				calls++
				if !bytes.Equal(hash, tc.wantHash) {
					t.Errorf("compared against %q, want %q", hash, tc.wantHash)
				}
				if string(pw) != tc.pw {
					t.Errorf("compared password %q, want %q", pw, tc.pw)
				}
				if tc.cmpOK {
					return nil
				}
				return bcrypt.ErrMismatchedHashAndPassword
			}
			if got := checkPassword(cmp, tc.hash, tc.found, tc.pw); got != tc.want {
				t.Errorf("checkPassword = %v, want %v", got, tc.want)
			}
			if calls != 1 {
				t.Errorf("%d comparisons, want exactly 1", calls)
			}
		})
	}
}

func TestDeviceTokens(t *testing.T) {
	k := fixtureKey(t)
	tok, err := k.IssueDevice("Alice")
	if err != nil {
		t.Fatal(err)
	}
	id, ok := k.VerifyDevice(tok, "alice")
	if !ok || len(id) != 22 || !strings.HasPrefix(tok, id+".") {
		t.Fatalf("VerifyDevice(%q) = %q, %v", tok, id, ok)
	}
	other, err := ParseKey(strings.Repeat("cd", 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.VerifyDevice(tok, "alice"); ok {
		t.Error("a token passed under another key")
	}
	if _, ok := k.VerifyDevice(tok, "bob"); ok {
		t.Error("a token passed for another account")
	}
	for _, bad := range []string{"", ".", id, id + ".", tok[:len(tok)-1], "x" + tok[1:], tok + strings.Repeat("A", 200)} {
		if _, ok := k.VerifyDevice(bad, "alice"); ok {
			t.Errorf("VerifyDevice(%q) passed", bad)
		}
	}
	// Device and session tokens are signed with different subkeys.
	if _, err := k.VerifySession(tok, t0); err == nil {
		t.Error("a device token passed as a session token")
	}
	stok, _, err := k.IssueSession("alice", "admin", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.VerifyDevice(stok, "alice"); ok {
		t.Error("a session token passed as a device token")
	}
	var zero *Key
	if _, err := zero.IssueDevice("alice"); err == nil {
		t.Error("the zero key issued a device token")
	}
}

func TestCheckAdminKey(t *testing.T) {
	for _, weak := range []string{"", "s3cret", "sk-test-admin", strings.Repeat("a", 64), strings.Repeat("0123456789", 4)} {
		if CheckAdminKey(weak) == nil {
			t.Errorf("CheckAdminKey(%q) accepted it", weak)
		}
	}
	key, _, _ := NewAPIKey()
	for _, strong := range []string{key, "sk-llmproxy-" + hex.EncodeToString(randomBytes(24))} {
		if err := CheckAdminKey(strong); err != nil {
			t.Errorf("CheckAdminKey(%q): %v", strong, err)
		}
	}
}
