package synth

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"runtime"
	"sync"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
)

// Version numbers the weight generator. It is written into
// general.description, so cached files from another version are rewritten.
const Version = 1

// outputGain scales the output matrix so that logits have a standard
// deviation near 4, as a trained model's do: the next-token distribution
// is peaked, not near uniform.
const outputGain = 4

// Options control WriteWith.
type Options struct {
	// Threads generate and quantize rows; <= 0: one per CPU.
	Threads int
	// Seed selects the random weights; the same seed gives the same file.
	Seed uint64
	// Progress, when set, is called from the writing goroutine after each
	// chunk with the bytes of tensor data written so far and the total.
	Progress func(done, total int64)
}

// Tensor is one tensor of a synthetic file.
type Tensor struct {
	Name string
	Type quant.Type
	Dims []uint64 // ggml's ne: Dims[0] is the row length
	// Scale is the standard deviation of the weights; 0 means a norm
	// vector of ones.
	Scale float32

	role   role
	layer  int  // -1 outside the layers
	expert bool // a stack of experts' weights or biases
}

// Rows returns the number of rows (the product of Dims[1:]).
func (t Tensor) Rows() int {
	n := 1
	for _, d := range t.Dims[1:] {
		n *= int(d)
	}
	return n
}

// Bytes returns the size of the tensor's data.
func (t Tensor) Bytes() int64 {
	rb, _ := t.Type.RowBytes(int(t.Dims[0]))
	return int64(rb) * int64(t.Rows())
}

// Plan lists the tensors of a file of shape s and file type ft with their
// types, in the order llama-quantize writes them (the tensors outside the
// layers by name, then each layer's by name).
func Plan(s Shape, ft FileType) []Tensor {
	r := recipe{ft: ft, layers: s.Layers, gqa: s.Heads / s.KVHeads, experts: s.Experts, tied: s.Tied}
	ts := s.tensors()
	for i := range ts {
		ts[i].Type = r.tensorType(ts[i])
	}
	return ts
}

// Description is the general.description of a file written with seed.
func Description(seed uint64) string {
	return fmt.Sprintf("random weights written by Hearth (synth v%d, seed %d); not a trained model", Version, seed)
}

// Write writes a synthetic model of shape s and file type quantName
// ("q4_0", "q4_k_m", …; see FileTypes) to path on threads threads (<= 0:
// all CPUs), with seed 0.
func Write(path string, s Shape, quantName string, threads int) error {
	return WriteWith(path, s, quantName, Options{Threads: threads})
}

// WriteWith is Write with all options. The file appears at path only when
// complete.
func WriteWith(path string, s Shape, quantName string, o Options) error {
	if err := s.Validate(); err != nil {
		return err
	}
	ft, err := LookupFileType(quantName)
	if err != nil {
		return err
	}
	threads := o.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	w := gguf.NewWriter()
	setMetadata(w, s, ft, o.Seed)
	plan := Plan(s, ft)
	var total int64
	for _, t := range plan {
		total += t.Bytes()
	}
	var done int64 // only the writing goroutine counts
	for _, t := range plan {
		err := w.AddTensorFunc(t.Name, t.Type, t.Dims, func(out io.Writer) error {
			return writeTensor(out, t, o.Seed, threads, func(n int) {
				done += int64(n)
				if o.Progress != nil {
					o.Progress(done, total)
				}
			})
		})
		if err != nil {
			return err
		}
	}
	if err := w.WriteFile(path); err != nil {
		return fmt.Errorf("synth: %s: %w", path, err)
	}
	// WriteFile's temporary file is private; a model file is not.
	if err := os.Chmod(path, 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

func setMetadata(w *gguf.Writer, s Shape, ft FileType, seed uint64) {
	u32 := func(k string, v int) { w.Set(k, gguf.Uint32(uint32(v))) }
	arch := s.Architecture()
	w.Set("general.architecture", gguf.String(arch))
	w.Set("general.type", gguf.String("model"))
	w.Set("general.name", gguf.String("synthetic "+s.Name))
	w.Set("general.description", gguf.String(Description(seed)))
	u32("general.file_type", int(ft.ID))
	for _, m := range s.metadata() {
		switch v := m.val.(type) {
		case uint32:
			w.Set(arch+"."+m.key, gguf.Uint32(v))
		case float32:
			w.Set(arch+"."+m.key, gguf.Float32(v))
		case string:
			w.Set(arch+"."+m.key, gguf.String(v))
		case []int32, []bool:
			w.Set(arch+"."+m.key, gguf.ArrayValue(v))
		}
	}
	tokens, scores, types := vocab(s.Vocab)
	w.Set("tokenizer.ggml.model", gguf.String("llama"))
	w.Set("tokenizer.ggml.pre", gguf.String("default"))
	w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(tokens))
	w.Set("tokenizer.ggml.scores", gguf.ArrayValue(scores))
	w.Set("tokenizer.ggml.token_type", gguf.ArrayValue(types))
	u32("tokenizer.ggml.bos_token_id", bosID)
	u32("tokenizer.ggml.eos_token_id", eosID)
	u32("tokenizer.ggml.unknown_token_id", unkID)
	w.Set("tokenizer.ggml.add_bos_token", gguf.Bool(true))
	w.Set("tokenizer.ggml.add_eos_token", gguf.Bool(false))
	u32("general.quantization_version", 2)
}

// chunkBytes is the most bytes of output one worker produces at a time.
const chunkBytes = 1 << 20

// writeTensor generates, quantizes and writes t's rows: chunks of rows are
// produced on threads goroutines and written in order, with at most
// 2×threads chunks in memory.
func writeTensor(out io.Writer, t Tensor, seed uint64, threads int, wrote func(int)) error {
	cols, rows := int(t.Dims[0]), t.Rows()
	rb, err := t.Type.RowBytes(cols)
	if err != nil {
		return err
	}
	// Enough chunks to keep every thread busy, none above chunkBytes.
	per := max(1, min((rows+4*threads-1)/(4*threads), chunkBytes/rb))
	n := (rows + per - 1) / per
	nameSeed := hashName(t.Name)
	produce := func(i int, buf []byte, x []float32) error {
		r0 := i * per
		for r := r0; r < min(rows, r0+per); r++ {
			fillTensorRow(x, t, seed, nameSeed, r)
			if err := quant.QuantizeRow(t.Type, x, buf[(r-r0)*rb:(r-r0+1)*rb]); err != nil {
				return err
			}
		}
		return nil
	}
	size := func(i int) int { return (min(rows, (i+1)*per) - i*per) * rb }
	return ordered(n, min(threads, n), per*rb, size, cols, produce, func(b []byte) error {
		if _, err := out.Write(b); err != nil {
			return err
		}
		wrote(len(b))
		return nil
	})
}

// ordered runs produce for chunks 0..n-1 on threads goroutines and consume
// on the caller's goroutine in chunk order, with at most 2×threads buffers
// of bufSize bytes. It stops at the first error.
func ordered(n, threads, bufSize int, size func(int) int, cols int,
	produce func(i int, buf []byte, x []float32) error, consume func([]byte) error) error {
	type job struct {
		i   int
		buf []byte
	}
	type result struct {
		buf []byte
		err error
	}
	window := 2 * threads
	free := make(chan []byte, window)
	for range window {
		free <- nil // allocated on first use
	}
	results := make([]chan result, n)
	for i := range results {
		results[i] = make(chan result, 1)
	}
	jobs := make(chan job)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		defer close(jobs)
		for i := range n {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			if buf == nil {
				buf = make([]byte, bufSize)
			}
			select {
			case jobs <- job{i, buf[:size(i)]}:
			case <-stop:
				return
			}
		}
	}()
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := make([]float32, cols)
			for j := range jobs {
				err := produce(j.i, j.buf, x)
				results[j.i] <- result{j.buf, err}
			}
		}()
	}
	var err error
	for i := range n {
		r := <-results[i]
		if err = r.err; err == nil {
			err = consume(r.buf)
		}
		if err != nil {
			break
		}
		free <- r.buf[:cap(r.buf)]
	}
	close(stop)
	wg.Wait()
	return err
}

func hashName(name string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, name)
	return h.Sum64()
}

// normal holds the quantiles of the standard normal distribution at the
// midpoints of 65536 equal steps of probability: indexing it with 16
// random bits draws from N(0, 1) with tails to ±4.3 (what a trained model's
// weights look like to a quantizer), far faster than a Ziggurat.
var normal = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		p := (float64(i) + 0.5) / (1 << 16)
		t[i] = float32(math.Sqrt2 * math.Erfinv(2*p-1))
	}
	return &t
})

// fillRow writes row r of a tensor: N(0, scale²) values from a SplitMix64
// stream seeded by (seed, tensor, row), or ones for a norm (scale 0).
func fillRow(x []float32, seed, nameSeed uint64, r int, scale float32) {
	if scale == 0 {
		for i := range x {
			x[i] = 1
		}
		return
	}
	q := normal()
	state := mix(seed ^ mix(nameSeed^mix(uint64(r))))
	for len(x) >= 4 {
		state += 0x9e3779b97f4a7c15
		z := mix(state)
		x[0] = q[uint16(z)] * scale
		x[1] = q[uint16(z>>16)] * scale
		x[2] = q[uint16(z>>32)] * scale
		x[3] = q[uint16(z>>48)] * scale
		x = x[4:]
	}
	state += 0x9e3779b97f4a7c15
	z := mix(state)
	for i := range x {
		x[i] = q[uint16(z>>(16*i))] * scale
	}
}

// fillTensorRow fills row r of t: random (fillRow, ones for a norm), but
// where the tensor's role fixes the values.
func fillTensorRow(x []float32, t Tensor, seed, nameSeed uint64, r int) {
	switch {
	case t.role == roleNorm && t.Scale != 0: // a norm of another constant weight
		for i := range x {
			x[i] = t.Scale
		}
	case t.role == roleRopeFreqs: // proportional RoPE: a quarter of the pairs rotate
		for i := range x {
			x[i] = 1
			if i >= len(x)/4 {
				x[i] = 1e30
			}
		}
	case t.role == roleDecay: // -1 - |N(0, 1)|: every head decays
		fillRow(x, seed, nameSeed, r, t.Scale)
		for i, v := range x {
			x[i] = -1 - float32(math.Abs(float64(v)))
		}
	default:
		fillRow(x, seed, nameSeed, r, t.Scale)
	}
}

// mix is SplitMix64's output function.
func mix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
