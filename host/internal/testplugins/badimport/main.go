//go:build wasip1

// Command badimport imports a host function that ABI 2 does not have; the
// host must refuse to load it and say which import is missing.
package main

import "github.com/llm-proxy/llm-proxy/sdk"

//go:wasmimport llmproxy_v2 read_secret
func readSecret() int32

type plugin struct{ sdk.Unimplemented }

func (plugin) Chat(s *sdk.Stream) error {
	readSecret()
	return nil
}

func init() { sdk.Register(plugin{}) }

func main() {}
