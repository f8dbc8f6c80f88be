package chatreq

import (
	"bytes"
	"strconv"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// BadRequest is a 400 for the client, with the body OpenAI sends for a
// request it refuses: {"error":{"message":...,"type":
// "invalid_request_error","param":param,"code":null}}. param names the
// offending field (messages[2].content); "" makes it null. Returned from a
// Plugin method, the SDK fails the call with it as it is. The caller builds
// message itself, with Elem, strconv and concatenation: fmt would add
// hundreds of kilobytes to a wasm guest.
func BadRequest(param, message string) error {
	b := []byte(`{"error":{"message":`)
	b = rawjson.AppendString(b, message)
	b = append(b, `,"type":"invalid_request_error","param":`...)
	if param == "" {
		b = append(b, "null"...)
	} else {
		b = rawjson.AppendString(b, param)
	}
	b = append(b, `,"code":null}}`...)
	return &sdk.HTTPError{Status: 400, Message: string(b)}
}

// UnsupportedPart refuses part j of messages[i], of type typ, in a message
// of the role the provider calls role (a plugin names the roles as its
// provider does, so that the error matches what the client reads in the
// provider's documentation).
func UnsupportedPart(i, j int, typ []byte, role string) error {
	param := Elem("messages", i) + ".content"
	return BadRequest(param, Elem(param, j)+": content parts of type "+strconv.Quote(string(typ))+
		" are not supported in "+role+" messages by this provider")
}

// Elem names element i of the array name, as a param or in a message:
// Elem("messages", 3) is "messages[3]", Elem("messages[3].content", 1)
// "messages[3].content[1]".
func Elem(name string, i int) string {
	return name + "[" + strconv.Itoa(i) + "]"
}

// Blank reports whether the JSON string literal s (quotes included) holds
// only spaces, tabs and line breaks: text a plugin may have to leave out,
// as Anthropic's Messages API refuses text blocks without visible text.
// The literal is valid JSON, so a tab or a line break in it can only be
// an escape; the loop stops at the first byte that is not blank.
func Blank(s []byte) bool {
	for i := 1; i < len(s)-1; i++ {
		switch s[i] {
		case ' ':
		case '\\':
			if i+1 < len(s)-1 && (s[i+1] == 'n' || s[i+1] == 't' || s[i+1] == 'r') {
				i++
				continue
			}
			return false
		default:
			return false
		}
	}
	return true
}

// ParseDataURL splits data:<media type>[;params];base64,<data>, the way
// OpenAI clients send images and files inline. isData reports the data:
// scheme; mediaType or data is nil when the URL has that scheme but is not
// a base64 data URL with a media type, which a plugin should refuse rather
// than send on. Both are sub-slices of u, as the client wrote them: the
// media type keeps its case.
func ParseDataURL(u []byte) (mediaType, data []byte, isData bool) {
	if !HasPrefixFold(u, "data:") {
		return nil, nil, false
	}
	meta, payload, ok := bytes.Cut(u[5:], []byte{','})
	if !ok || len(meta) < 7 || !bytes.EqualFold(meta[len(meta)-7:], []byte(";base64")) {
		return nil, nil, true
	}
	mt, _, _ := bytes.Cut(meta, []byte{';'})
	if len(mt) == 0 {
		return nil, nil, true
	}
	return mt, payload, true
}

// HasPrefixFold reports whether b begins with prefix, ignoring case: URL
// schemes are case-insensitive (HTTPS://, DATA:).
func HasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// Created is the Unix time for the created field of an OpenAI object built
// from an upstream response: the response's Date header, for providers
// whose answers carry no timestamp of their own, or the clock when the
// header is missing or unreadable.
func Created(resp *sdk.Response) int64 {
	if d, ok := resp.Header("Date"); ok {
		if t, ok := ParseHTTPDate(d); ok {
			return t
		}
	}
	return time.Now().Unix()
}

// ParseHTTPDate reads an IMF-fixdate, "Tue, 14 Nov 2023 22:13:20 GMT", the
// Date format HTTP servers send (RFC 9110), into Unix seconds; ok is false
// for anything else, the obsolete formats included. It does by arithmetic
// what time.Parse does with loops, which cost a guest dearly. The weekday
// is not checked.
func ParseHTTPDate(d string) (unix int64, ok bool) {
	if len(d) != 29 || d[3] != ',' || d[4] != ' ' || d[7] != ' ' || d[11] != ' ' || d[16] != ' ' ||
		d[19] != ':' || d[22] != ':' || d[25:] != " GMT" {
		return 0, false
	}
	num := func(s string) (int64, bool) {
		var n int64
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int64(s[i]-'0')
		}
		return n, true
	}
	day, ok1 := num(d[5:7])
	year, ok2 := num(d[12:16])
	hh, ok3 := num(d[17:19])
	mm, ok4 := num(d[20:22])
	ss, ok5 := num(d[23:25])
	month := int64(0)
	for i, m := range [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"} {
		if d[8:11] == m {
			month = int64(i + 1)
		}
	}
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || month == 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 {
		return 0, false
	}
	// Days from 1970-01-01 to the civil date (Howard Hinnant's
	// days_from_civil), with March as the first month of the year so that
	// February's leap day comes last.
	if month <= 2 {
		year--
	}
	era := year / 400
	yoe := year - era*400
	mp := (month + 9) % 12
	doy := (153*mp+2)/5 + day - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := era*146097 + doe - 719468
	return days*86400 + hh*3600 + mm*60 + ss, true
}
