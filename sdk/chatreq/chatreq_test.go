package chatreq

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// walk reads the messages in JSON with r and returns one line per piece,
// and the error that stopped the iteration. refuse is a part type the
// caller refuses with UnsupportedPart, as a plugin would.
func walk(t *testing.T, r *Reader, messages, refuse string) (string, error) {
	t.Helper()
	doc, err := rawjson.Parse([]byte(`{"messages":`+messages+`}`), nil)
	if err != nil {
		t.Fatalf("test input: %v", err)
	}
	var log []string
	m := r.Messages(doc.Root().Get("messages"), rawjson.Parse)
	for m.Next() {
		i, j := m.Message(), m.Index()
		switch m.Kind() {
		case Text:
			log = append(log, fmt.Sprintf("%d.%d %s text %s", i, j, m.Role(), m.Value().Raw()))
		case Part:
			if refuse != "" && string(m.Type()) == refuse {
				return strings.Join(log, "\n"), UnsupportedPart(i, j, m.Type(), m.Role().String())
			}
			log = append(log, fmt.Sprintf("%d.%d %s part %q %s", i, j, m.Role(), m.Type(), m.Value().Raw()))
		case ToolCall:
			log = append(log, fmt.Sprintf("%d.%d %s call %s %s %s", i, j, m.Role(), m.ID().Raw(), m.Name().Raw(), m.Arguments()))
		case ToolResult:
			content := "absent"
			if m.Value().Exists() {
				content = string(m.Value().Raw())
			}
			log = append(log, fmt.Sprintf("%d.%d %s result %s %s", i, j, m.Role(), m.ID().Raw(), content))
		default:
			t.Fatalf("kind %d", m.Kind())
		}
	}
	if m.Next() {
		t.Fatal("Next after the end")
	}
	return strings.Join(log, "\n"), m.Err()
}

// errBody is the body BadRequest writes for param and message.
func errBody(param, message string) string {
	p := "null"
	if param != "" {
		p = `"` + param + `"`
	}
	return `{"error":{"message":` + message + `,"type":"invalid_request_error","param":` + p + `,"code":null}}`
}

func TestWalk(t *testing.T) {
	tests := []struct {
		name, messages, want string
	}{
		{"every role with string content",
			`[{"role":"system","content":"s"},{"role":"developer","content":"d"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]`,
			"0.-1 system text \"s\"\n1.-1 system text \"d\"\n2.-1 user text \"u\"\n3.-1 assistant text \"a\""},
		{"text kept as it came, blank and empty included",
			`[{"role":"user","content":"a\"b\u00e9"},{"role":"user","content":""},{"role":"user","content":" \n"}]`,
			"0.-1 user text \"a\\\"b\\u00e9\"\n1.-1 user text \"\"\n2.-1 user text \" \\n\""},
		{"null, absent and empty array content",
			`[{"role":"user","content":null},{"role":"assistant"},{"role":"system","content":[]}]`, ""},
		{"text parts",
			`[{"role":"developer","content":[{"type":"text","text":"x"},{"text":"y","type":"text"}]}]`,
			"0.0 system text \"x\"\n0.1 system text \"y\""},
		{"refusal of an assistant is text",
			`[{"role":"assistant","content":[{"type":"refusal","refusal":"no"},{"type":"text","text":"t"}]}]`,
			"0.0 assistant text \"no\"\n0.1 assistant text \"t\""},
		{"refusal elsewhere, or not a string, is a part",
			`[{"role":"user","content":[{"type":"refusal","refusal":"no"}]},{"role":"assistant","content":[{"type":"refusal","refusal":null}]}]`,
			"0.0 user part \"refusal\" {\"type\":\"refusal\",\"refusal\":\"no\"}\n1.0 assistant part \"refusal\" {\"type\":\"refusal\",\"refusal\":null}"},
		{"image, file, audio and odd parts go to the plugin",
			`[{"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBER"}},{"type":"input_audio","input_audio":{"data":"UklG","format":"wav"}},{},5,{"type":"te\u0078t","text":"escaped type"}]}]`,
			"0.0 user text \"see\"\n" +
				"0.1 user part \"image_url\" {\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}\n" +
				"0.2 user part \"file\" {\"type\":\"file\",\"file\":{\"file_data\":\"data:application/pdf;base64,JVBER\"}}\n" +
				"0.3 user part \"input_audio\" {\"type\":\"input_audio\",\"input_audio\":{\"data\":\"UklG\",\"format\":\"wav\"}}\n" +
				"0.4 user part \"\" {}\n" +
				"0.5 user part \"\" 5\n" +
				"0.6 user text \"escaped type\""},
		{"tool calls after the content",
			`[{"role":"assistant","content":"let me look","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"c2","function":{"name":"g","arguments":" {\"s\":\"\\u00e9\"} "}}]}]`,
			"0.-1 assistant text \"let me look\"\n0.0 assistant call \"c1\" \"f\" {\"a\":1}\n0.1 assistant call \"c2\" \"g\" {\"s\":\"\\u00e9\"}"},
		{"tool calls without arguments",
			`[{"role":"assistant","tool_calls":[{"id":"c1","function":{"name":"f"}},{"id":"c2","function":{"name":"g","arguments":null}},{"id":"c3","function":{"name":"h","arguments":"  "}}]}]`,
			"0.0 assistant call \"c1\" \"f\" {}\n0.1 assistant call \"c2\" \"g\" {}\n0.2 assistant call \"c3\" \"h\" {}"},
		{"null and empty tool_calls",
			`[{"role":"assistant","content":"a","tool_calls":null},{"role":"assistant","tool_calls":[]}]`,
			"0.-1 assistant text \"a\""},
		{"tool_calls of other roles are not read",
			`[{"role":"user","content":"u","tool_calls":5}]`, "0.-1 user text \"u\""},
		{"tool messages, content as it came",
			`[{"role":"tool","tool_call_id":"c1","content":"72F"},{"role":"tool","tool_call_id":"c\u0032","content":[{"type":"text","text":"x"}]},{"role":"tool","tool_call_id":"c3"},{"role":"tool","tool_call_id":"c4","content":5}]`,
			"0.-1 tool result \"c1\" \"72F\"\n1.-1 tool result \"c\\u0032\" [{\"type\":\"text\",\"text\":\"x\"}]\n2.-1 tool result \"c3\" absent\n3.-1 tool result \"c4\" 5"},
		{"the last of a repeated member counts",
			`[{"role":"user","content":"a","role":"assistant","content":"b"}]`, "0.-1 assistant text \"b\""},
		{"an escaped role is decoded",
			`[{"role":"us\u0065r","content":"u"}]`, "0.-1 user text \"u\""},
		{"keys that only look like ours are not read",
			`[{"role":"user","contenu":"a","contents":"b","content":"c","rolE":"system","tool_callz":5,"tool_call_ix":5},{"role":"assistant","tool_callx":5,"tool_calls_":5}]`,
			"0.-1 user text \"c\""},
		{"an escaped key is not read",
			`[{"role":"user","con\u0074ent":"a"}]`, ""},
		{"no messages", `[]`, ""},
	}
	var r Reader
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := walk(t, &r, tt.messages, "")
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestWalkErrors: malformed messages are refused with the exact 400 the
// plugins sent before the walk moved here.
func TestWalkErrors(t *testing.T) {
	tests := []struct {
		name, messages, param, message string
	}{
		{"not an array", `{"role":"user"}`, "messages", `"messages must be an array of message objects"`},
		{"null", `null`, "messages", `"messages must be an array of message objects"`},
		{"a message not an object", `[{"role":"user","content":"x"},"hi"]`, "messages[1]", `"messages[1] must be an object"`},
		{"unknown role", `[{"role":"function","content":"x"}]`, "messages[0].role",
			`"messages[0].role \"function\" is not supported; use system, developer, user, assistant or tool"`},
		{"role in capitals", `[{"role":"USER","content":"x"}]`, "messages[0].role",
			`"messages[0].role \"USER\" is not supported; use system, developer, user, assistant or tool"`},
		{"role missing", `[{"content":"x"}]`, "messages[0].role",
			`"messages[0].role  is not supported; use system, developer, user, assistant or tool"`},
		{"role near assistant", `[{"role":"assistent","content":"x"}]`, "messages[0].role",
			`"messages[0].role \"assistent\" is not supported; use system, developer, user, assistant or tool"`},
		{"role near developer", `[{"role":"developes","content":"x"}]`, "messages[0].role",
			`"messages[0].role \"developes\" is not supported; use system, developer, user, assistant or tool"`},
		{"role near user", `[{"role":"usex","content":"x"}]`, "messages[0].role",
			`"messages[0].role \"usex\" is not supported; use system, developer, user, assistant or tool"`},
		{"role near system", `[{"role":"systen","content":"x"}]`, "messages[0].role",
			`"messages[0].role \"systen\" is not supported; use system, developer, user, assistant or tool"`},
		{"empty role", `[{"role":"","content":"x"}]`, "messages[0].role",
			`"messages[0].role \"\" is not supported; use system, developer, user, assistant or tool"`},
		{"role null", `[{"role":null}]`, "messages[0].role",
			`"messages[0].role null is not supported; use system, developer, user, assistant or tool"`},
		{"role an array", `[{"role":["user"]}]`, "messages[0].role",
			`"messages[0].role [\"user\"] is not supported; use system, developer, user, assistant or tool"`},
		{"role a number", `[{"role":5}]`, "messages[0].role",
			`"messages[0].role 5 is not supported; use system, developer, user, assistant or tool"`},
		{"content a number", `[{"role":"user","content":5}]`, "messages[0].content",
			`"messages[0].content must be a string or an array of content parts"`},
		{"content an object", `[{"role":"system","content":{"text":"x"}}]`, "messages[0].content",
			`"messages[0].content must be a string or an array of content parts"`},
		{"text part without text", `[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text"}]}]`, "messages[0].content[1]",
			`"messages[0].content[1].text must be a string"`},
		{"text part with a number", `[{"role":"assistant","content":[{"type":"text","text":5}]}]`, "messages[0].content[0]",
			`"messages[0].content[0].text must be a string"`},
		{"tool_calls not an array", `[{"role":"assistant","tool_calls":{}}]`, "messages[0].tool_calls", `"tool_calls must be an array"`},
		{"tool call without id", `[{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]`, "messages[0].tool_calls[0]",
			`"messages[0].tool_calls[0] needs a string id and function.name"`},
		{"tool call without name", `[{"role":"assistant","tool_calls":[{"id":"c","function":{}}]}]`, "messages[0].tool_calls[0]",
			`"messages[0].tool_calls[0] needs a string id and function.name"`},
		{"tool call not an object", `[{"role":"assistant","tool_calls":[5]}]`, "messages[0].tool_calls[0]",
			`"messages[0].tool_calls[0] needs a string id and function.name"`},
		{"arguments a number", `[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":5}}]}]`, "messages[0].tool_calls[0]",
			`"messages[0].tool_calls[0].function.arguments must be a string"`},
		{"arguments not an object", `[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}},{"id":"d","function":{"name":"f","arguments":"[1]"}}]}]`,
			"messages[0].tool_calls[1]", `"messages[0].tool_calls[1].function.arguments must be a JSON object"`},
		{"arguments not JSON", `[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{oops"}}]}]`, "messages[0].tool_calls[0]",
			`"messages[0].tool_calls[0].function.arguments must be a JSON object"`},
		{"tool message without id", `[{"role":"tool","content":"x"}]`, "messages[0].tool_call_id", `"messages[0].tool_call_id must be a string"`},
		{"tool message with a number id", `[{"role":"user","content":"x"},{"role":"tool","tool_call_id":7,"content":"x"}]`, "messages[1].tool_call_id",
			`"messages[1].tool_call_id must be a string"`},
		{"the plugin refuses a part", `[{"role":"user","content":[{"type":"input_audio"}]}]`, "messages[0].content",
			`"messages[0].content[0]: content parts of type \"input_audio\" are not supported in user messages by this provider"`},
	}
	var r Reader
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := walk(t, &r, tt.messages, "input_audio")
			var he *sdk.HTTPError
			if !errors.As(err, &he) || he.Status != 400 {
				t.Fatalf("error %v, want a 400", err)
			}
			if want := errBody(tt.param, tt.message); he.Message != want {
				t.Fatalf("body\n%s\nwant\n%s", he.Message, want)
			}
		})
	}
}

// TestStopsAtError: the pieces before a malformed message are read, in
// order, then Next stops and Err says why; an empty iterator refuses
// messages that are not an array.
func TestStopsAtError(t *testing.T) {
	var r Reader
	got, err := walk(t, &r, `[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]},`+
		`{"role":"assistant","content":"b","tool_calls":[{"id":"c","function":{"name":"f"}},{"id":"d"}]},{"role":"user","content":"never"}]`, "")
	want := "0.0 user text \"a\"\n0.1 user part \"image_url\" {\"type\":\"image_url\"}\n1.-1 assistant text \"b\"\n1.0 assistant call \"c\" \"f\" {}"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), `"param":"messages[1].tool_calls[1]"`) {
		t.Fatalf("error %v", err)
	}
	// The content's error comes before the tool_calls' one.
	if _, err := walk(t, &r, `[{"role":"assistant","content":5,"tool_calls":5}]`, ""); err == nil || !strings.Contains(err.Error(), `"param":"messages[0].content"`) {
		t.Fatalf("error %v", err)
	}
	var m Messages
	if m.Next() || m.Err() != nil {
		t.Fatal("the zero Messages is not empty")
	}
}

// TestReaderReusesTape: the tape that checks tool call arguments is kept
// between requests, so a warm instance does not allocate one per call.
func TestReaderReusesTape(t *testing.T) {
	doc, err := rawjson.Parse([]byte(`[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{\"a\":[1,2,3]}"}}]}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var r Reader
	tapes := 0
	parse := func(data []byte, tape []uint32) (rawjson.Doc, error) {
		if cap(tape) == 0 {
			tapes++
		}
		return rawjson.Parse(data, tape)
	}
	for range 3 {
		m := r.Messages(doc.Root(), parse)
		for m.Next() {
		}
		if m.Err() != nil {
			t.Fatal(m.Err())
		}
	}
	if tapes != 1 {
		t.Fatalf("%d tapes allocated, want 1", tapes)
	}
}

func TestBadRequest(t *testing.T) {
	tests := []struct {
		param, message string
		want           string
	}{
		{"model", "model must be a string",
			`{"error":{"message":"model must be a string","type":"invalid_request_error","param":"model","code":null}}`},
		{"", "the request body is not valid JSON",
			`{"error":{"message":"the request body is not valid JSON","type":"invalid_request_error","param":null,"code":null}}`},
		{"messages[0].role", Elem("messages", 0) + ".role " + `"x\"<y>"` + " is not supported",
			`{"error":{"message":"messages[0].role \"x\\\"<y>\" is not supported","type":"invalid_request_error","param":"messages[0].role","code":null}}`},
		{"tools[1]", Elem("tools", 1) + ": tab\there, line\u2028separator",
			`{"error":{"message":"tools[1]: tab\there, line\u2028separator","type":"invalid_request_error","param":"tools[1]","code":null}}`},
		{"n", "100% sure: %d %s stay as they are",
			`{"error":{"message":"100% sure: %d %s stay as they are","type":"invalid_request_error","param":"n","code":null}}`},
	}
	for _, tt := range tests {
		err := BadRequest(tt.param, tt.message)
		he, ok := err.(*sdk.HTTPError)
		if !ok || he.Status != 400 || he.Message != tt.want || err.Error() != tt.want {
			t.Errorf("BadRequest(%q, %q) = %#v\nwant %s", tt.param, tt.message, err, tt.want)
		}
	}
	if got := Elem(Elem("messages", 12)+".content", 0); got != "messages[12].content[0]" {
		t.Errorf("Elem = %q", got)
	}
	err := UnsupportedPart(2, 3, []byte("video"), "model")
	want := `{"error":{"message":"messages[2].content[3]: content parts of type \"video\" are not supported in model messages by this provider","type":"invalid_request_error","param":"messages[2].content","code":null}}`
	if err.Error() != want {
		t.Errorf("UnsupportedPart:\n%s\nwant\n%s", err, want)
	}
}

func TestBlank(t *testing.T) {
	for lit, want := range map[string]bool{
		`""`: true, `" "`: true, `"\n"`: true, `" \t\r\n  "`: true,
		`"x"`: false, `" x "`: false, `"\\"`: false, `"\u0020"`: false, `"\""`: false, `"\n\\n"`: false, `"\/"`: false,
	} {
		if got := Blank([]byte(lit)); got != want {
			t.Errorf("Blank(%s) = %v", lit, got)
		}
	}
}

func TestParseDataURL(t *testing.T) {
	tests := []struct {
		url, mediaType, data string
		isData               bool
	}{
		{"data:image/png;base64,iVBO", "image/png", "iVBO", true},
		{"DATA:Image/PNG;BASE64,iVBO", "Image/PNG", "iVBO", true},
		{"data:application/pdf;name=a.pdf;base64,JVBER", "application/pdf", "JVBER", true},
		{"data:image/png;base64,", "image/png", "", true},
		{"data:image/png,abc", "", "", true},           // not base64
		{"data:;base64,abc", "", "", true},             // no media type
		{"data:image/png;base64", "", "", true},        // no comma
		{"data:base64,abc", "", "", true},              // too short for ;base64
		{"data:image/png;charset=x,abc", "", "", true}, // parameters, not base64
		{"https://x/y.png", "", "", false},
		{"dat", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		mt, data, isData := ParseDataURL([]byte(tt.url))
		if string(mt) != tt.mediaType || string(data) != tt.data || isData != tt.isData {
			t.Errorf("ParseDataURL(%q) = %q, %q, %v", tt.url, mt, data, isData)
		}
		if tt.isData && tt.mediaType != "" && data == nil {
			t.Errorf("ParseDataURL(%q): nil data for a base64 data URL", tt.url)
		}
	}
	if _, data, _ := ParseDataURL([]byte("data:image/png;base64,")); data == nil {
		t.Error("an empty payload must be empty, not nil")
	}
}

func TestHasPrefixFold(t *testing.T) {
	for _, tt := range []struct {
		s, prefix string
		want      bool
	}{
		{"https://x", "https://", true}, {"HTTPS://x", "https://", true}, {"HtTp://", "http://", true},
		{"http:/", "http://", false}, {"ftp://x", "http://", false}, {"", "data:", false}, {"data:", "", true},
	} {
		if got := HasPrefixFold([]byte(tt.s), tt.prefix); got != tt.want {
			t.Errorf("HasPrefixFold(%q, %q) = %v", tt.s, tt.prefix, got)
		}
	}
}

func TestParseHTTPDate(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 23, 59, 59, 0, time.UTC), time.Date(2100, 3, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2024, 12, 31, 1, 2, 3, 0, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		got, ok := ParseHTTPDate(tm.Format(http.TimeFormat))
		if !ok || got != tm.Unix() {
			t.Errorf("%s: %d %v, want %d", tm.Format(http.TimeFormat), got, ok, tm.Unix())
		}
	}
	// Every day of a leap year and of a common one.
	for tm := time.Date(2023, 1, 1, 6, 7, 8, 0, time.UTC); tm.Year() < 2025; tm = tm.AddDate(0, 0, 1) {
		if got, ok := ParseHTTPDate(tm.Format(http.TimeFormat)); !ok || got != tm.Unix() {
			t.Fatalf("%s: %d %v, want %d", tm.Format(http.TimeFormat), got, ok, tm.Unix())
		}
	}
	for _, bad := range []string{
		"", "Tue, 14 Nov 2023 22:13:20 UTC", "Tue, 14 Foo 2023 22:13:20 GMT", "Tue, 1x Nov 2023 22:13:20 GMT",
		"Tuesday, 14-Nov-23 22:13:20 GMT", "Tue Nov 14 22:13:20 2023", "Tue, 14 Nov 2023 22:13:20 GMT ",
		"Tue, 00 Nov 2023 22:13:20 GMT", "Tue, 32 Nov 2023 22:13:20 GMT", "Tue, 14 Nov 2023 24:13:20 GMT",
		"Tue, 14 Nov 2023 22:60:20 GMT", "Tue, 14 Nov 2023 22:13:61 GMT", "Tue, 14 nov 2023 22:13:20 GMT",
		"Tue, 14 Nov -023 22:13:20 GMT", "Tue; 14 Nov 2023 22:13:20 GMT", "Tue, 14 Nov 2023 22.13.20 GMT",
	} {
		if got, ok := ParseHTTPDate(bad); ok {
			t.Errorf("%q accepted as %d", bad, got)
		}
	}
}

func TestRoleString(t *testing.T) {
	for r, want := range map[Role]string{System: "system", User: "user", Assistant: "assistant", Tool: "tool", 0: "unknown"} {
		if r.String() != want {
			t.Errorf("Role(%d) = %s, want %s", r, r, want)
		}
	}
}

// TestNoAllocs: once the Reader's tape has grown, reading well-formed
// messages allocates nothing but the decoded copy of tool call arguments
// that hold escapes (as arguments with a key do: "{\"a\":1}").
func TestNoAllocs(t *testing.T) {
	for _, tt := range []struct {
		args   string
		allocs float64
	}{{`"{}"`, 0}, {`""`, 0}, {`"{\"a\":1}"`, 1}} {
		doc, err := rawjson.Parse([]byte(`[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},`+
			`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":`+tt.args+`}}]},{"role":"tool","tool_call_id":"c1","content":"72F"}]`), nil)
		if err != nil {
			t.Fatal(err)
		}
		var r Reader
		n := 0
		read := func() {
			m := r.Messages(doc.Root(), rawjson.Parse)
			for m.Next() {
				n++
			}
			if m.Err() != nil {
				t.Fatal(m.Err())
			}
		}
		read()
		if allocs := testing.AllocsPerRun(100, read); allocs != tt.allocs {
			t.Errorf("arguments %s: %v allocations per read, want %v", tt.args, allocs, tt.allocs)
		}
		if n != 5*102 { // AllocsPerRun runs once more to warm up
			t.Fatalf("%d pieces", n)
		}
	}
}
