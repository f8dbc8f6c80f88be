module github.com/llm-proxy/llm-proxy/sdk

// The plugin SDK is a module of its own so that a plugin author who
// imports it inherits nothing but the standard library.

go 1.26.8
