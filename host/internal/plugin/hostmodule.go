package plugin

import (
	"context"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// instantiateHostModule defines llmproxy_v1 in r. Every function takes i32
// parameters and returns one i32; a call outside of Version.Call (which
// would mean the guest called a host function from _initialize) answers
// StatusInvalid.
func instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(abi.ImportModule)
	for _, h := range hostFns {
		fn := h.fn
		n := abi.HostFunctions[h.name]
		params := make([]api.ValueType, n)
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				st := stateOf(ctx)
				if st == nil {
					stack[0] = api.EncodeI32(int32(abi.StatusInvalid))
					return
				}
				stack[0] = api.EncodeI32(fn(ctx, mod, st, stack[:n]))
			}), params, []api.ValueType{api.ValueTypeI32}).
			WithName(h.name).
			Export(h.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}
