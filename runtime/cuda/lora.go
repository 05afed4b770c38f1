package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// LoRA adapters on the device (backend.LoRA; kernels/cuda lora.cu). A
// pair lives in device memory as the CPU keeps it: A (rank × in) and B
// transposed (rank × out), F16 or F32. A product's deltas are one table
// of tasks (an adapter pair and up to loraRows of its rows) put on the
// device with the step's other inputs, a shrink launch (c = s·A·x for
// every task) and an expand launch (dst += Bᵀ·c): two launches per
// product whatever the number of adapters in the step. Everything the
// kernels read changes through their arguments and the step-input arena,
// so a decode step with adapters records into a CUDA graph like any other
// (graph.go: its topology, hence its graph, changes with the number of
// tasks and the largest rank, and the arguments are patched).

// loraRows and loraRec are lora.cu's LORA_ROWS and LORA_REC.
const (
	loraRows = 8
	loraRec  = 24
)

// loraWeight is a pair bound on the device.
type loraWeight struct {
	name          string
	out, in, rank int
	f16           bool
	a, bt         *buffer
}

func (l *loraWeight) Shape() (out, in, rank int) { return l.out, l.in, l.rank }

// BindLoRA implements backend.LoRA: A and Bᵀ uploaded (synchronously: the
// caller's slices are only borrowed), in the backend's ledger until Close.
func (b *Backend) BindLoRA(name string, a, bm []float32, out, in, rank int, t quant.Type) (backend.LoRAWeight, error) {
	if out <= 0 || in <= 0 || rank <= 0 || len(a) != rank*in || len(bm) != out*rank {
		return nil, fmt.Errorf("lora %q: %d and %d values for a pair of rank %d on %d × %d", name, len(a), len(bm), rank, out, in)
	}
	if t != quant.F32 && t != quant.F16 {
		return nil, fmt.Errorf("lora %q: %w: pairs kept as %v", name, quant.ErrUnsupported, t)
	}
	l := &loraWeight{name: name, out: out, in: in, rank: rank, f16: t == quant.F16}
	bt := make([]float32, rank*out)
	for o := range out {
		for j := range rank {
			bt[j*out+o] = bm[o*rank+j]
		}
	}
	var err error
	if l.a, err = b.uploadPair(name, a, l.f16); err != nil {
		return nil, err
	}
	if l.bt, err = b.uploadPair(name, bt, l.f16); err != nil {
		b.free(l.a)
		return nil, err
	}
	return l, nil
}

// uploadPair puts v on the device as F16 or F32 and waits for the copy.
func (b *Backend) uploadPair(name string, v []float32, f16 bool) (*buffer, error) {
	var data []byte
	if f16 {
		h := make([]uint16, len(v))
		for i, x := range v {
			h[i] = quant.F32ToF16(x)
		}
		data = unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), 2*len(h))
	} else {
		data = f32Bytes(v)
	}
	buf, err := b.alloc(uint64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("lora %q: %w", name, err)
	}
	err = b.dev.Do(func(drv Driver, s Stream) error {
		if err := drv.MemcpyHtoDAsync(buf.ptr, unsafe.Pointer(&data[0]), uint64(len(data)), s); err != nil {
			return err
		}
		return drv.StreamSynchronize(s)
	})
	if err != nil {
		b.free(buf)
		return nil, fmt.Errorf("lora %q: upload: %w", name, err)
	}
	return buf, nil
}

// loraTasks builds the task table of ds (lora.cu's layout) into b.loraTab
// and returns it with the task count and the largest rank; ids, when not
// nil, gives each row's token id (AddLoRAEmbed). check validates each
// pair against the product's shape (a mismatch is a programming error).
func (b *Backend) loraTasks(ds []backend.LoRADelta, ids []int32, check func(l *loraWeight, row int32)) (tab []int32, n, maxRank int) {
	tab = b.loraTab[:0]
	for _, d := range ds {
		l := d.W.(*loraWeight)
		maxRank = max(maxRank, l.rank)
		for r0 := 0; r0 < len(d.Rows); r0 += loraRows {
			rows := d.Rows[r0:min(len(d.Rows), r0+loraRows)]
			var rec [loraRec]int32
			pa, pb := uint64(l.a.ptr), uint64(l.bt.ptr)
			rec[0], rec[1], rec[2], rec[3] = int32(uint32(pa)), int32(uint32(pa>>32)), int32(uint32(pb)), int32(uint32(pb>>32))
			rec[4] = int32(math.Float32bits(d.Scale))
			rec[5] = int32(l.rank)
			if l.f16 {
				rec[6] = 1
			}
			rec[7] = int32(len(rows))
			for i, r := range rows {
				check(l, r)
				rec[8+i] = r
				if ids != nil {
					rec[16+i] = ids[r]
				}
			}
			tab = append(tab, rec[:]...)
			n++
		}
	}
	b.loraTab = tab
	return tab, n, maxRank
}

// AddLoRA implements backend.LoRA: lora_shrink then lora_expand over one
// task table.
func (b *Backend) AddLoRA(dst, x backend.Tensor, ds []backend.LoRADelta) {
	d, s := dst.(*tensor), x.(*tensor)
	if len(ds) == 0 || !b.ready(d, s) {
		return
	}
	tab, n, maxRank := b.loraTasks(ds, nil, func(l *loraWeight, row int32) {
		if l.in != s.cols || l.out != d.cols || row < 0 || int(row) >= min(s.rows, d.rows) {
			panic(fmt.Sprintf("cuda: lora %q (%d × %d) on row %d of %d × %d into %d × %d", l.name, l.out, l.in, row, s.rows, s.cols, d.rows, d.cols))
		}
	})
	if n == 0 {
		return
	}
	b.loraLaunch(d, tab, n, maxRank, func(c, meta DevicePtr) {
		b.launch("lora_shrink", grid2(n, ceilDiv(maxRank, 4)), block(128),
			argPtr(c), argPtr(s.ptr()), argPtr(meta), argInt(s.cols), argInt(maxRank))
	})
}

// AddLoRAEmbed implements backend.LoRA: lora_shrink_embed (columns of A)
// then lora_expand.
func (b *Backend) AddLoRAEmbed(dst backend.Tensor, ids []int32, ds []backend.LoRADelta) {
	d := dst.(*tensor)
	if len(ds) == 0 || !b.ready(d) {
		return
	}
	in := ds[0].W.(*loraWeight).in
	for _, dl := range ds {
		l := dl.W.(*loraWeight)
		for _, r := range dl.Rows {
			if l.out != d.cols || l.in != in || r < 0 || int(r) >= min(d.rows, len(ids)) {
				panic(fmt.Sprintf("cuda: lora %q (%d × %d) on embedding row %d of %d × %d", l.name, l.out, l.in, r, d.rows, d.cols))
			}
			if id := ids[r]; id < 0 || int(id) >= l.in {
				b.fail(fmt.Errorf("lora %q: token id %d out of range [0, %d)", l.name, id, l.in))
				return
			}
		}
	}
	tab, n, maxRank := b.loraTasks(ds, ids, func(*loraWeight, int32) {})
	if n == 0 {
		return
	}
	b.loraLaunch(d, tab, n, maxRank, func(c, meta DevicePtr) {
		b.launch("lora_shrink_embed", grid1(n), block(32), argPtr(c), argPtr(meta), argInt(in), argInt(maxRank))
	})
}

// loraLaunch puts the task table on the device, runs shrink (which fills
// the coefficients c) and the expand into d.
func (b *Backend) loraLaunch(d *tensor, tab []int32, n, maxRank int, shrink func(c, meta DevicePtr)) {
	meta := b.stepInput(&b.loraMeta, int32Bytes(tab))
	c := b.scratch(&b.loraC, uint64(4*n*loraRows*maxRank))
	if meta == 0 || c == 0 {
		return
	}
	shrink(c, meta)
	b.launch("lora_expand", grid2(n, ceilDiv(d.cols, 256)), block(256),
		argPtr(d.ptr()), argPtr(c), argPtr(meta), argInt(d.cols), argInt(maxRank))
}

var _ backend.LoRA = (*Backend)(nil)
