package abi

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// Manifest describes a plugin. It travels inside the .wasm file as the JSON
// payload of the custom section ManifestSection, so the host can read it
// before compiling or instantiating anything.
type Manifest struct {
	// Name identifies the plugin; providers in the config refer to it.
	// Lower case letters, digits, '.', '_' and '-'.
	Name string `json:"name"`
	// Version is the plugin's own version, free-form (semver recommended).
	Version string `json:"version"`
	// ABI is "major.minor" of the ABI the plugin was built against.
	ABI string `json:"abi"`
	// Description is one line for operators.
	Description string `json:"description,omitempty"`
	// Capabilities lists the operations the plugin implements: "chat",
	// "chat_stream", "embeddings", "models"; and "fetch_image" if it asks
	// the host to download images by URL.
	Capabilities []string `json:"capabilities"`
	// Auth says how the host attaches the provider's secret to upstream
	// requests. The plugin never sees the secret.
	Auth Auth `json:"auth"`
	// ConfigSchema is a JSON Schema for the provider's `options` table. The
	// host shows it to operators; it does not enforce it.
	ConfigSchema json.RawMessage `json:"config_schema,omitempty"`
}

// Auth declares how a provider authenticates.
//
//	{"type":"header","name":"Authorization","format":"Bearer {key}"}
//	{"type":"header","name":"x-api-key","format":"{key}"}
//	{"type":"query","name":"key"}
//	{"type":"none"}
type Auth struct {
	Type   string `json:"type"`
	Name   string `json:"name,omitempty"`
	Format string `json:"format,omitempty"`
}

// Capability names.
const (
	CapChat       = "chat"
	CapChatStream = "chat_stream"
	CapEmbeddings = "embeddings"
	CapModels     = "models"
	// CapMessages: the plugin serves OpMessages and OpMessagesStream,
	// Anthropic Messages API requests passed through unchanged (ABI 2.1).
	CapMessages = "messages"
	// CapFetchImage asks for fetch_image: the host downloads images the
	// client's request names by URL. The operator must also allow it for
	// each provider (allow_image_fetch).
	CapFetchImage = "fetch_image"
)

// KeyPlaceholder is replaced by the secret in Auth.Format.
const KeyPlaceholder = "{key}"

// namePattern is the rule of Manifest.Name. It is checked by validName, not
// a regexp: the guest SDK imports this package, and a package-level regexp
// would link the regexp engine (and run its compiler) in every plugin.
const namePattern = `^[a-z0-9][a-z0-9._-]{0,63}$`

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Errors returned while reading a manifest.
var (
	ErrNotWasm          = errors.New("not a WebAssembly binary")
	ErrNoManifest       = errors.New("no " + ManifestSection + " custom section")
	ErrDuplicateSection = errors.New("more than one " + ManifestSection + " custom section")
)

// ParseManifest decodes and validates a manifest.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &wrapped{"manifest: " + err.Error(), err}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate reports every problem of the manifest in one error.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(msg string) { errs = append(errs, errors.New("manifest: "+msg)) }
	if !validName(m.Name) {
		bad("name " + strconv.Quote(m.Name) + " must match " + namePattern)
	}
	if m.Version == "" {
		bad("version is empty")
	}
	if _, _, err := m.ABIVersion(); err != nil {
		bad(err.Error())
	}
	if len(m.Capabilities) == 0 {
		bad("capabilities is empty")
	}
	for _, c := range m.Capabilities {
		switch c {
		case CapChat, CapChatStream, CapEmbeddings, CapModels, CapMessages, CapFetchImage:
		default:
			bad("unknown capability " + strconv.Quote(c))
		}
	}
	switch m.Auth.Type {
	case "none":
	case "header":
		if !isToken([]byte(m.Auth.Name)) {
			bad("auth.name " + strconv.Quote(m.Auth.Name) + " is not a valid header name")
		}
		if !strings.Contains(m.Auth.Format, KeyPlaceholder) {
			bad("auth.format must contain " + KeyPlaceholder)
		}
	case "query":
		if m.Auth.Name == "" {
			bad("auth.name (the query parameter) is empty")
		}
	default:
		bad("auth.type " + strconv.Quote(m.Auth.Type) + ` must be "header", "query" or "none"`)
	}
	if len(m.ConfigSchema) > 0 && !json.Valid(m.ConfigSchema) {
		bad("config_schema is not valid JSON")
	}
	return errors.Join(errs...)
}

// ABIVersion splits the ABI field into major and minor.
func (m *Manifest) ABIVersion() (major, minor int, err error) {
	a, b, ok := strings.Cut(m.ABI, ".")
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || !digits(a) || !digits(b) {
		return 0, 0, errors.New("abi " + strconv.Quote(m.ABI) + ` must be "major.minor", e.g. "` + strconv.Itoa(Major) + "." + strconv.Itoa(Minor) + `"`)
	}
	return major, minor, nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Has reports whether the plugin declares a capability.
func (m *Manifest) Has(capability string) bool {
	for _, c := range m.Capabilities {
		if c == capability {
			return true
		}
	}
	return false
}
