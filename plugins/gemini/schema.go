package main

import (
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// appendSchema writes a JSON Schema (an OpenAI tool's parameters, a
// response_format's schema) as the Schema object Gemini accepts, "a select
// subset of an OpenAPI 3.0 schema object". Gemini refuses a request with a
// keyword outside that subset, so the schema is rebuilt keyword by keyword:
//
//   - kept: description, title, nullable, enum (all strings), required,
//     properties, items, anyOf, propertyOrdering, minItems, maxItems,
//     minLength, maxLength, minProperties, maxProperties, pattern, minimum,
//     maximum, default, example; format when it is one Gemini knows
//     (enum, date-time, float, double, int32, int64);
//   - rewritten: type in upper case ("string" is STRING), a type list with
//     "null" as nullable ("type": ["string","null"] is STRING, nullable),
//     oneOf as anyOf, a string const as a one-value enum;
//   - dropped: everything else: $schema, $id, $ref and $defs (references
//     are not resolved), additionalProperties, allOf, not, if/then/else,
//     exclusiveMinimum/Maximum, multipleOf, uniqueItems, examples, strict,
//     patternProperties, and unknown keywords.
func appendSchema(b []byte, v rawjson.Value, depth int) []byte {
	if v.Kind() != rawjson.Object || depth > 32 {
		return append(b, "{}"...)
	}
	b = append(b, '{')
	n := 0
	key := func(k string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
	}
	nullable := false
	for m := v.Members(); m.Next(); {
		val := m.Value()
		switch k := string(m.Key()); k {
		case "type":
			t, null := schemaType(val)
			nullable = nullable || null
			if t != "" {
				key("type")
				b = append(b, '"')
				b = append(b, t...)
				b = append(b, '"')
			}
		case "nullable":
			if val.IsTrue() {
				nullable = true
			}
		case "properties":
			if val.Kind() != rawjson.Object {
				continue
			}
			key(k)
			b = append(b, '{')
			p := 0
			for pm := val.Members(); pm.Next(); p++ {
				if p > 0 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = append(b, pm.Key()...)
				b = append(b, '"', ':')
				b = appendSchema(b, pm.Value(), depth+1)
			}
			b = append(b, '}')
		case "items":
			if val.Kind() == rawjson.Object {
				key(k)
				b = appendSchema(b, val, depth+1)
			}
		case "anyOf", "oneOf":
			if val.Kind() != rawjson.Array || val.Len() == 0 {
				continue
			}
			key("anyOf")
			b = append(b, '[')
			e := val.Elements()
			for a := 0; e.Next(); a++ {
				if a > 0 {
					b = append(b, ',')
				}
				b = appendSchema(b, e.Value(), depth+1)
			}
			b = append(b, ']')
		case "enum":
			if val.Kind() == rawjson.Array && allStrings(val) {
				key(k)
				b = append(b, val.Raw()...)
			}
		case "const":
			if val.Kind() == rawjson.String {
				key("enum")
				b = append(b, '[')
				b = append(b, val.Raw()...)
				b = append(b, ']')
			}
		case "format":
			f, _ := val.Str()
			switch string(f) {
			case "enum", "date-time", "float", "double", "int32", "int64":
				key(k)
				b = append(b, val.Raw()...)
			}
		case "description", "title", "pattern":
			if val.Kind() == rawjson.String {
				key(k)
				b = append(b, val.Raw()...)
			}
		case "required", "propertyOrdering":
			if val.Kind() == rawjson.Array && allStrings(val) {
				key(k)
				b = append(b, val.Raw()...)
			}
		case "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties", "minimum", "maximum":
			if val.Kind() == rawjson.Number {
				key(k)
				b = append(b, val.Raw()...)
			}
		case "default", "example":
			key(k)
			b = append(b, val.Raw()...)
		}
	}
	if nullable {
		key("nullable")
		b = append(b, "true"...)
	}
	return append(b, '}')
}

// schemaType returns the Gemini type for a JSON Schema type (a string, or
// a list in which "null" means nullable).
func schemaType(v rawjson.Value) (t string, nullable bool) {
	switch v.Kind() {
	case rawjson.String:
		s, _ := v.Str()
		t = upperType(s)
		return t, t == "NULL"
	case rawjson.Array:
		for e := v.Elements(); e.Next(); {
			s, _ := e.Value().Str()
			switch u := upperType(s); u {
			case "NULL":
				nullable = true
			case "":
			default:
				if t == "" {
					t = u
				}
			}
		}
	}
	return t, nullable
}

func upperType(s []byte) string {
	switch string(s) {
	case "string", "STRING":
		return "STRING"
	case "number", "NUMBER":
		return "NUMBER"
	case "integer", "INTEGER":
		return "INTEGER"
	case "boolean", "BOOLEAN":
		return "BOOLEAN"
	case "array", "ARRAY":
		return "ARRAY"
	case "object", "OBJECT":
		return "OBJECT"
	case "null", "NULL":
		return "NULL"
	}
	return ""
}

func allStrings(v rawjson.Value) bool {
	for e := v.Elements(); e.Next(); {
		if e.Value().Kind() != rawjson.String {
			return false
		}
	}
	return true
}
