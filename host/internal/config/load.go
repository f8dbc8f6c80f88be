package config

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"
)

// Load builds the configuration: it starts from Default, merges the TOML
// file at path on top (path "" means defaults only), applies the LLMPROXY_*
// overrides found in environ (os.Environ-style "NAME=value" entries, the
// last one winning) and validates the result.
//
// A file that cannot be read yields a plain error. Everything else that is
// wrong (syntax, unknown keys, wrong types, bad environment values, failed
// validation) is collected into a Problems value, wrapped into the returned
// error, so that all of it is reported at once.
func Load(path string, environ []string) (*Config, error) {
	cfg := Default()
	var probs Problems

	if path != "" {
		fileProbs, err := loadFile(cfg, path)
		if err != nil {
			return nil, err
		}
		probs = append(probs, fileProbs...)
	}

	envProbs, fromEnv := applyEnv(cfg, environ)
	probs = append(probs, envProbs...)

	// A key that already failed to load is not reported again by
	// validation; validating what is left of it would only add noise.
	reported := make([]string, len(probs))
	for i, p := range probs {
		reported[i] = p.Key
	}
	for _, p := range cfg.problems() {
		if slices.ContainsFunc(reported, func(k string) bool { return within(p.Key, k) }) {
			continue
		}
		for key, env := range fromEnv {
			if within(p.Key, key) {
				p.Msg += " (value from " + env + ")"
				break
			}
		}
		probs = append(probs, p)
	}

	if len(probs) > 0 {
		where := "(defaults and environment)"
		if path != "" {
			where = path
		}
		return nil, fmt.Errorf("invalid configuration %s:\n%w", where, probs)
	}
	return cfg, nil
}

// loadFile parses the TOML file at path with koanf and decodes it over cfg.
// Entries with unknown keys or wrong types are reported and left out; the
// rest is still decoded so that later checks can run on it.
func loadFile(cfg *Config, path string) (Problems, error) {
	ko := koanf.New(".")
	if err := ko.Load(file.Provider(path), toml.Parser()); err != nil {
		if _, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, fmt.Errorf("read config: %w", err)
		}
		return Problems{syntaxProblem(err)}, nil
	}

	var c checker
	clean := c.table("", reflect.TypeFor[Config](), ko.Raw())

	// Decode only the entries that passed the checks, through koanf's
	// unmarshaller, on top of the defaults already in cfg.
	good := koanf.New(".")
	if err := good.Load(tree(clean), nil); err != nil {
		return nil, fmt.Errorf("load checked config: %w", err)
	}
	err := good.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			// Duration and ByteSize strings go through their
			// UnmarshalText; plain time.Duration fields, should any
			// be added, through the duration hook.
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.TextUnmarshallerHookFunc(),
			),
			WeaklyTypedInput: false,
		},
	})
	if err != nil {
		// The checker should have caught everything mapstructure can
		// object to; if it did not, still report the problem by key.
		c.probs = append(c.probs, decodeProblems(err)...)
	}
	return c.probs, nil
}

// tree is a koanf.Provider serving an already parsed configuration map.
type tree map[string]any

// ReadBytes is not supported: tree only has parsed data.
func (t tree) ReadBytes() ([]byte, error) {
	return nil, errors.New("tree provider has no raw bytes")
}

// Read returns the map.
func (t tree) Read() (map[string]any, error) { return t, nil }

// syntaxProblem turns a TOML parse error into a Problem carrying the key
// (when the parser knows it) and the position.
func syntaxProblem(err error) Problem {
	de, ok := errors.AsType[*gotoml.DecodeError](err)
	if !ok {
		return Problem{Msg: "invalid TOML: " + strings.TrimPrefix(err.Error(), "toml: ")}
	}
	var key string
	for _, part := range de.Key() {
		key = joinKey(key, part)
	}
	row, col := de.Position()
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	return Problem{Key: key, Msg: fmt.Sprintf("invalid TOML at line %d, column %d: %s", row, col, msg)}
}

// decodeProblems converts mapstructure errors into Problems.
func decodeProblems(err error) Problems {
	var out Problems
	var walk func(error)
	walk = func(err error) {
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
			return
		}
		if de, ok := errors.AsType[*mapstructure.DecodeError](err); ok {
			out = append(out, Problem{Key: mapstructureKey(de.Name()), Msg: de.Unwrap().Error()})
			return
		}
		out = append(out, Problem{Msg: err.Error()})
	}
	walk(err)
	return out
}

// mapstructureKey rewrites a mapstructure field name such as
// "plugins.limits_override[my.plugin].memory_pages" as a TOML key path.
// Array indexes ("providers[1]") are kept as they are.
func mapstructureKey(name string) string {
	var out strings.Builder
	for name != "" {
		open := strings.IndexByte(name, '[')
		if open < 0 {
			out.WriteString(name)
			break
		}
		out.WriteString(name[:open])
		end := strings.IndexByte(name[open:], ']')
		if end < 0 {
			out.WriteString(name[open:])
			break
		}
		inner := name[open+1 : open+end]
		if isDigits(inner) {
			out.WriteString("[" + inner + "]")
		} else {
			out.WriteString(joinKey(".", inner)[1:])
		}
		name = name[open+end+1:]
	}
	return out.String()
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// checker walks a parsed TOML tree along the Config type, using the koanf
// struct tags as the set of known keys. It records unknown keys and values
// of the wrong type and builds a copy of the tree without them.
type checker struct {
	probs Problems
}

// table checks the entries of a TOML table against struct type t.
func (c *checker) table(key string, t reflect.Type, m map[string]any) map[string]any {
	fields := fieldsByTag(t)
	out := make(map[string]any, len(m))
	for _, name := range sortedKeys(m) {
		k := joinKey(key, name)
		f, ok := fields[name]
		if !ok {
			c.unknownKey(k, name, fields)
			continue
		}
		if v, ok := c.value(k, f.Type, m[name]); ok {
			out[name] = v
		}
	}
	return out
}

// removedKeys explain keys that earlier versions knew.
var removedKeys = map[string]string{
	"max_idle_instances": "removed with plugin runtime 2: instances now follow demand and close when idle (see min_instances and idle_timeout)",
}

func (c *checker) unknownKey(key, name string, fields map[string]reflect.StructField) {
	if why, ok := removedKeys[name]; ok {
		c.probs.add(key, "%s", why)
		return
	}
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	slices.Sort(known)
	if guess := closest(name, known); guess != "" {
		c.probs.add(key, "unknown key (did you mean %q?)", guess)
		return
	}
	c.probs.add(key, "unknown key (known keys here: %s)", strings.Join(known, ", "))
}

// value checks one TOML value against Go type t and returns what to keep.
func (c *checker) value(key string, t reflect.Type, v any) (any, bool) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType:
		s, ok := v.(string)
		if !ok {
			return c.wrongType(key, t, v)
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			c.probs.add(key, "%v", err)
			return nil, false
		}
		return s, true
	case byteSizeType:
		switch x := v.(type) {
		case int64:
			return x, true
		case string:
			if _, err := ParseByteSize(x); err != nil {
				c.probs.add(key, "%v", err)
				return nil, false
			}
			return x, true
		}
		return c.wrongType(key, t, v)
	}

	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); ok {
			return v, true
		}
	case reflect.Bool:
		if _, ok := v.(bool); ok {
			return v, true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n, ok := v.(int64); ok {
			if reflect.New(t).Elem().OverflowInt(n) {
				c.probs.add(key, "integer %d is out of range", n)
				return nil, false
			}
			return v, true
		}
	case reflect.Float32, reflect.Float64:
		// A number written without a decimal point is still a number.
		switch x := v.(type) {
		case float64:
			return x, true
		case int64:
			return float64(x), true
		}
	case reflect.Interface:
		return v, true
	case reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			return c.table(key, t, m), true
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			break
		}
		if t.Elem().Kind() == reflect.Interface {
			return m, true // free-form table, passed on untouched
		}
		out := make(map[string]any, len(m))
		for _, name := range sortedKeys(m) {
			if x, ok := c.value(joinKey(key, name), t.Elem(), m[name]); ok {
				out[name] = x
			}
		}
		return out, true
	case reflect.Slice:
		items, ok := asArray(v)
		if !ok {
			break
		}
		out := make([]any, 0, len(items))
		for i, item := range items {
			x, ok := c.value(indexKey(key, i), t.Elem(), item)
			if !ok {
				// Keep a blank in its place so that the indexes of
				// the following elements stay right.
				x = blank(t.Elem())
			}
			out = append(out, x)
		}
		return out, true
	}
	return c.wrongType(key, t, v)
}

func (c *checker) wrongType(key string, t reflect.Type, v any) (any, bool) {
	c.probs.add(key, "expected %s, got %s", describeType(t), describeValue(v))
	return nil, false
}

// blank is the tree value standing in for a rejected element of type t.
func blank(t reflect.Type) any {
	if t.Kind() == reflect.Struct {
		return map[string]any{}
	}
	return reflect.Zero(t).Interface()
}

func asArray(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []map[string]any:
		out := make([]any, len(x))
		for i, m := range x {
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// describeType says in TOML terms what a Go type expects.
func describeType(t reflect.Type) string {
	switch t {
	case durationType:
		return `a duration string such as "30s" or "5m"`
	case byteSizeType:
		return `a size (an integer number of bytes or a string such as "4MiB")`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a table"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "an array of tables"
		}
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "an "), "a ") + "s"
	}
	return t.String()
}

// describeValue names the TOML type of a parsed value, with the value
// itself when it is short.
func describeValue(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			return "a string"
		}
		return fmt.Sprintf("string %q", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return fmt.Sprintf("float %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case time.Time, gotoml.LocalDate, gotoml.LocalTime, gotoml.LocalDateTime:
		return "a date/time"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	if _, ok := asArray(v); ok {
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// fieldsByTag indexes the fields of struct type t by their koanf tag.
func fieldsByTag(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField, t.NumField())
	for f := range t.Fields() {
		if name := tagName(f); name != "" {
			out[name] = f
		}
	}
	return out
}

// tagName is the TOML key of a struct field, or "" if it has none.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
