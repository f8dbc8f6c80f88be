package sdk

import (
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// ParseJSON checks that data holds one JSON value and returns it as a
// rawjson.Doc, whose tape the host builds natively (json_tape, ABI 1.1):
// walking a Doc costs the guest a few steps per value instead of a step per
// byte. tape is reused when it is large enough; keep it (doc.Tape) for the
// next call to parse without allocating. Malformed input gives
// rawjson.ErrSyntax.
//
// A plugin that calls ParseJSON imports json_tape and must declare
// "abi": "1.1" (or later) in its manifest.
func (c *Call) ParseJSON(data []byte, tape []uint32) (rawjson.Doc, error) {
	for {
		n := c.host.JSONTape(data, tape[:0:cap(tape)])
		switch {
		case n == int32(abi.StatusMalformed) || n == 0:
			return rawjson.Doc{Data: data, Tape: tape[:0]}, rawjson.ErrSyntax
		case n < 0:
			return rawjson.Doc{Data: data, Tape: tape[:0]}, statusErr("json_tape", n)
		case int(n)*rawjson.EntryWords > cap(tape):
			tape = make([]uint32, 0, int(n)*rawjson.EntryWords+int(n)) // room to grow
			continue
		}
		return rawjson.Doc{Data: data, Tape: tape[:int(n)*rawjson.EntryWords]}, nil
	}
}
