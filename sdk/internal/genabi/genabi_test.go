package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedFileIsCurrent holds sdk/zabi_wasip1.go to the tables in
// sdk/abi.
func TestGeneratedFileIsCurrent(t *testing.T) {
	got, err := os.ReadFile("../../zabi_wasip1.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Generate()) {
		t.Fatal("sdk/zabi_wasip1.go is stale: run `go generate ./sdk`")
	}
}
