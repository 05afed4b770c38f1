package split

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
)

// Plan says which parts of a model run on the device; the rest run on the
// host. It follows llama.cpp's -ngl: the device takes the last Offloaded
// repeating layers (the activations then cross once each way per forward
// pass), and the output layer only when every layer is there.
type Plan struct {
	Layers    int  // the model's repeating layers, blk.0 … blk.Layers-1
	Offloaded int  // how many of them, counted from the last, run on the device
	Output    bool // output_norm.weight and the output matrix run on the device
	// TiedOutput says the output matrix is token_embd.weight (the file has
	// no output.weight): with Output, that table is bound on both sides,
	// on the device for the logits and on the host for the lookup.
	TiedOutput bool
}

// Layers turns a -ngl count into a plan for a model of layers layers: the
// last min(n, layers) layers on the device, the output layer too when n >
// layers (99: everything); n <= 0 keeps everything on the host.
func Layers(layers, n int, tied bool) Plan {
	n = max(n, 0)
	return Plan{Layers: layers, Offloaded: min(n, layers), Output: n > layers, TiedOutput: tied}
}

// N is the plan as a -ngl count (Layers+1 when the output layer is
// offloaded).
func (p Plan) N() int {
	if p.Output {
		return p.Layers + 1
	}
	return p.Offloaded
}

// OnDevice says whether repeating layer l runs on the device.
func (p Plan) OnDevice(l int) bool { return l >= p.Layers-p.Offloaded && l < p.Layers }

// All says whether the whole model runs on the device.
func (p Plan) All() bool { return p.Offloaded >= p.Layers && p.Output }

// None says whether nothing runs on the device.
func (p Plan) None() bool { return p.Offloaded <= 0 && !p.Output }

func (p Plan) String() string {
	s := fmt.Sprintf("%d/%d layers", p.Offloaded, p.Layers)
	if p.Output {
		s += " and the output layer"
	}
	return s
}

// LayerOf returns the repeating layer a GGUF tensor belongs to (its name
// starts with "blk.N."), or -1.
func LayerOf(name string) int {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return -1
	}
	num, _, ok := strings.Cut(rest, ".")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// Place says on which sides the named weight is bound: a layer's weights
// where the layer runs, output_norm.weight and output.weight where the
// output layer runs, token_embd.weight on the host (llama.cpp keeps the
// input embedding there: a lookup reads a few rows) and also on the
// device when it is the offloaded output matrix; anything else on the host.
func (p Plan) Place(name string) (host, dev bool) {
	if l := LayerOf(name); l >= 0 {
		d := p.OnDevice(l)
		return !d, d
	}
	switch name {
	case "output.weight", "output_norm.weight":
		return !p.Output, p.Output
	case "token_embd.weight":
		return true, p.Output && p.TiedOutput
	}
	return true, false
}

// ForFile is Layers for the model in f: its repeating layers are counted
// from the tensor names (one more than the highest blk.N), and the output
// is tied when the file has no output.weight.
func ForFile(f *gguf.File, n int) Plan {
	layers := 0
	for i := range f.Tensors {
		layers = max(layers, LayerOf(f.Tensors[i].Name)+1)
	}
	_, untied := f.Tensor("output.weight")
	return Layers(layers, n, !untied)
}

// Footprint is what a model's weights take on the device, by placement.
type Footprint struct {
	Layer  []uint64 // each repeating layer's weights
	Output uint64   // output_norm.weight and the output matrix
}

// Measure sums the device bytes of the weights of f, for a plan from
// ForFile; size is the device's storage rule for a weight of rows × cols
// of type t (cuda.WeightBytes).
func Measure(f *gguf.File, size func(t quant.Type, rows, cols int) uint64) Footprint {
	all := ForFile(f, 1<<30)
	fp := Footprint{Layer: make([]uint64, all.Layers)}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if len(t.Dims) == 0 {
			continue
		}
		cols, rows := int(t.Dims[0]), int(t.Elements()/max(t.Dims[0], 1))
		b := size(t.Type, rows, cols)
		if l := LayerOf(t.Name); l >= 0 {
			fp.Layer[l] += b
			continue
		}
		if _, dev := all.Place(t.Name); dev {
			fp.Output += b
		}
	}
	return fp
}

// Reserve is what the device must hold besides the weights.
type Reserve struct {
	KVPerLayer uint64 // one layer's KV cache
	Scratch    uint64 // activations and fixed overheads, once anything runs there
	Output     uint64 // extra activations (logits) when the output layer runs there
}

// Fit returns the largest -ngl count (0 … len(fp.Layer)+1) whose weights
// and reserves fit in free bytes, and the bytes that plan needs (0 for
// none). Layers are taken from the last, as Layers places them.
func Fit(fp Footprint, r Reserve, free uint64) (n int, need uint64) {
	var sum uint64 = r.Scratch
	layers := len(fp.Layer)
	for n < layers {
		next := sum + fp.Layer[layers-1-n] + r.KVPerLayer
		if next > free {
			return n, needOf(n, sum)
		}
		sum = next
		n++
	}
	if sum+fp.Output+r.Output <= free {
		return layers + 1, sum + fp.Output + r.Output
	}
	return n, needOf(n, sum)
}

func needOf(n int, sum uint64) uint64 {
	if n == 0 {
		return 0
	}
	return sum
}
