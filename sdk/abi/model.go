package abi

// MaxModelLen bounds the length of a model name.
const MaxModelLen = 256

// ModelNameRule says, for an error message, which characters ValidModel
// accepts.
const ModelNameRule = "letters, digits and - _ . : / @ +, with no empty, '.' or '..' part between slashes"

// ValidModel reports whether name may be a model name: 1 to MaxModelLen
// bytes of ASCII letters, digits and "-_.:/@+", where no part between
// slashes is empty, "." or "..". The host refuses a request naming any
// other model before it routes it, and a plugin that puts a model into an
// upstream URL checks it again: every one of these characters stands for
// itself in a URL path segment, so such a name can neither reach the query
// or fragment nor climb out of the path it is put in.
func ValidModel(name string) bool {
	if len(name) == 0 || len(name) > MaxModelLen {
		return false
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			if seg := name[start:i]; seg == "" || seg == "." || seg == ".." {
				return false
			}
			start = i + 1
			continue
		}
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '@', c == '+':
		default:
			return false
		}
	}
	return true
}
