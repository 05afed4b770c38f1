//go:build !amd64 || purego

package cpu

import "github.com/hearth-llm/hearth/quant"

// Without assembly only the generic kernels exist.
const cpuLevel = levelGeneric

func archImpls() map[quant.Type][]impl { return nil }
