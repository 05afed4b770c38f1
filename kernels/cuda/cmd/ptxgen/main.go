// Command ptxgen regenerates the PTX of kernels/cuda from its CUDA C
// sources with clang-16 (`make kernels`):
//
//	go run ./kernels/cuda/cmd/ptxgen [-clang clang-16] [-dir kernels/cuda]
//
// Each foo.cu becomes foo.ptx, headed by the SHA-256 of every source file
// that went into it and the compiler's version; kernels/cuda's tests fail
// when those records and the sources disagree. The launch table,
// launch_table.go (every entry point with its parameter types, read from
// the .param lists), is written beside them.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/hearth-llm/hearth/kernels/cuda/internal/ptxgen"
)

func main() {
	clang := flag.String("clang", ptxgen.Compiler, "the clang to compile with")
	dir := flag.String("dir", "kernels/cuda", "the folder of the .cu sources; the .ptx files are written beside them")
	flag.Parse()
	if err := ptxgen.Generate(*clang, *dir, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "ptxgen:", err)
		os.Exit(1)
	}
}
