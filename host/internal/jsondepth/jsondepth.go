// Package jsondepth bounds how deeply a JSON document nests before any
// recursive parser reads it. gjson's validator and encoding/json recurse
// once per level: a few megabytes of "[" made one of them grow the heap by
// hundreds of megabytes, or overflow the goroutine's stack and end the
// process. A document that passes Within nests no deeper than its bound.
package jsondepth

import "github.com/llm-proxy/llm-proxy/sdk/rawjson"

// Max is the bound for request bodies and plugin answers: the one the
// plugins' own JSON reader (sdk/rawjson) applies.
const Max = rawjson.MaxDepth

// Within reports whether the arrays and objects of b, read as JSON, nest at
// most max deep. It does not validate: brackets inside strings are skipped
// and anything else is left to the parser that follows. One pass, no
// allocation, no recursion.
func Within(b []byte, max int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Skip the string, escapes included.
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > max {
				return false
			}
		case ']', '}':
			depth--
		}
	}
	return true
}
