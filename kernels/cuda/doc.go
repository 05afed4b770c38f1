// Package cuda will hold the CUDA C kernel sources (*.cu) and the PTX that
// clang-16 generates from them, embedded with go:embed.
//
// Not built yet: the CUDA issue builds it.
package cuda
