package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// EnvPrefix starts the name of every environment override.
//
// The variable for a key path is the prefix, an underscore and the path
// upper-cased with dots turned into underscores: server.listen is
// LLMPROXY_SERVER_LISTEN, plugins.limits.memory_pages is
// LLMPROXY_PLUGINS_LIMITS_MEMORY_PAGES. Entries of [[providers]] are
// addressed by their name (upper-cased, '-' and '.' turned into '_'), e.g.
// LLMPROXY_PROVIDERS_OPENAI_BASE_URL, and entries of
// [plugins.limits_override] by their plugin name, e.g.
// LLMPROXY_PLUGINS_LIMITS_OVERRIDE_OPENAI_MAX_INSTANCES. Only entries that
// exist in the file can be overridden, a provider's name cannot be, and
// neither can the free-form options table. Arrays of strings (models,
// extra_hosts) are given as comma-separated lists.
//
// Because key names contain underscores themselves, variable names are
// never split: the name of each known key is computed and looked up.
// Other LLMPROXY_* variables, such as the admin key LLMPROXY_ADMIN_KEY,
// are not configuration keys and are ignored.
const EnvPrefix = "LLMPROXY"

// envTarget is one configuration value that an environment variable can
// set.
type envTarget struct {
	key string        // TOML key path
	val reflect.Value // settable field
}

// envWalker collects the env targets of a configuration.
type envWalker struct {
	targets map[string][]envTarget // by variable name
	commits []func()               // write modified map entries back
}

// applyEnv applies the overrides found in environ to cfg. It returns the
// problems found and, for every key that was set, the variable that set it.
func applyEnv(cfg *Config, environ []string) (Problems, map[string]string) {
	vars := make(map[string]string)
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(name, EnvPrefix+"_") {
			vars[name] = value // later entries win
		}
	}
	fromEnv := make(map[string]string)
	if len(vars) == 0 {
		return nil, fromEnv
	}

	w := envWalker{targets: make(map[string][]envTarget)}
	w.walk(reflect.ValueOf(cfg).Elem(), "", EnvPrefix, false)

	names := make([]string, 0, len(w.targets))
	for name := range w.targets {
		names = append(names, name)
	}
	slices.Sort(names)

	var probs Problems
	for _, name := range names {
		value, ok := vars[name]
		if !ok {
			continue
		}
		targets := w.targets[name]
		if len(targets) > 1 {
			keys := make([]string, len(targets))
			for i, t := range targets {
				keys[i] = t.key
			}
			probs.add(envKey(name, strings.Join(keys, ", ")),
				"ambiguous: the variable matches several entries whose names differ only in '-', '.' or '_'; rename one of them")
			continue
		}
		t := targets[0]
		v, err := parseEnvValue(t.val.Type(), value)
		if err != nil {
			probs.add(envKey(name, t.key), "%v", err)
			continue
		}
		t.val.Set(v)
		fromEnv[t.key] = name
	}
	for _, commit := range w.commits {
		commit()
	}
	return probs, fromEnv
}

// envKey is the Problem key for a value coming from an environment
// variable.
func envKey(name, key string) string {
	return name + " (" + key + ")"
}

// envWord turns a key or entry name into its part of a variable name.
func envWord(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, s)
}

// walk registers the env targets of struct value v, whose key path is
// key and whose variable names start with env. When inEntry is set, v is a
// named array entry and its name field is not overridable.
func (w *envWalker) walk(v reflect.Value, key, env string, inEntry bool) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := tagName(f)
		if tag == "" || (inEntry && tag == "name") {
			continue
		}
		fv := v.Field(i)
		fkey, fenv := joinKey(key, tag), env+"_"+envWord(tag)
		switch {
		case f.Type.Kind() == reflect.Struct:
			w.walk(fv, fkey, fenv, false)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			for j := range fv.Len() {
				entry := fv.Index(j)
				name, ok := entryName(entry)
				if !ok || name == "" {
					continue
				}
				w.walk(entry, indexKey(fkey, j), fenv+"_"+envWord(name), true)
			}
		case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
			for _, mk := range fv.MapKeys() {
				// Map entries cannot be set in place: work on a copy
				// and store it back once the overrides are applied.
				entry := reflect.New(f.Type.Elem()).Elem()
				entry.Set(fv.MapIndex(mk))
				w.walk(entry, joinKey(fkey, mk.String()), fenv+"_"+envWord(mk.String()), false)
				w.commits = append(w.commits, func() { fv.SetMapIndex(mk, entry) })
			}
		case f.Type.Kind() == reflect.Map:
			// Free-form tables are not overridable.
		default:
			w.targets[fenv] = append(w.targets[fenv], envTarget{key: fkey, val: fv})
		}
	}
}

// entryName returns the value of the "name" key of an array entry.
func entryName(entry reflect.Value) (string, bool) {
	t := entry.Type()
	for i := range t.NumField() {
		if tagName(t.Field(i)) == "name" && t.Field(i).Type.Kind() == reflect.String {
			return entry.Field(i).String(), true
		}
	}
	return "", false
}

// parseEnvValue parses the text of an environment variable as a value of
// type t.
func parseEnvValue(t reflect.Type, s string) (reflect.Value, error) {
	if t.Kind() == reflect.Pointer {
		v, err := parseEnvValue(t.Elem(), s)
		if err != nil {
			return reflect.Value{}, err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(v)
		return p, nil
	}
	out := reflect.New(t).Elem()
	trimmed := strings.TrimSpace(s) // for everything but strings
	switch t {
	case durationType:
		var d Duration
		if err := d.UnmarshalText([]byte(trimmed)); err != nil {
			return reflect.Value{}, err
		}
		out.SetInt(int64(d))
		return out, nil
	case byteSizeType:
		b, err := ParseByteSize(s)
		if err != nil {
			return reflect.Value{}, err
		}
		out.SetInt(int64(b))
		return out, nil
	}
	switch t.Kind() {
	case reflect.String:
		out.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(trimmed)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("expected true or false, got %q", s)
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(trimmed, 10, t.Bits())
		if err != nil {
			return reflect.Value{}, fmt.Errorf("expected an integer, got %q", s)
		}
		out.SetInt(n)
	case reflect.Slice:
		if t.Elem().Kind() != reflect.String {
			return reflect.Value{}, fmt.Errorf("cannot be set from the environment")
		}
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		list := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			list.Index(i).SetString(item)
		}
		out.Set(list)
	default:
		return reflect.Value{}, fmt.Errorf("cannot be set from the environment")
	}
	return out, nil
}
