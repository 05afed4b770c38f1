package cuda

import (
	"fmt"

	"github.com/hearth-llm/hearth/runtime/backend"
)

// The operations the model families beyond Llama added to the backend
// interface, not yet written as CUDA kernels: a model that needs one
// fails its forward pass with this message (the engine recovers it).
// TODO(families): kernels and fake-driver models for each.

func pending(op string) {
	panic(fmt.Sprintf("cuda: %s has no CUDA kernel yet (run with --device cpu)", op))
}

func (b *Backend) LayerNorm(dst, x backend.Tensor, w, bias backend.Weight, eps float32) {
	pending("LayerNorm")
}
func (b *Backend) GLU(dst, gate, up backend.Tensor, a backend.Act) {
	if a.Kind == backend.ActSiLU {
		b.SwiGLU(dst, gate, up)
		return
	}
	pending("GLU")
}
func (b *Backend) Activate(dst, x backend.Tensor, a backend.Act) { pending("Activate") }
func (b *Backend) AddBias(x backend.Tensor, bias backend.Weight) { pending("AddBias") }
func (b *Backend) Scale(x backend.Tensor, s ...float32)          { pending("Scale") }
func (b *Backend) AddScaledRows(dst, x backend.Tensor, idx []int, w []float32) {
	pending("AddScaledRows")
}
