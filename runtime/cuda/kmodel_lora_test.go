package cuda

// Go models of kernels/cuda lora.cu, as the fake driver runs them.

import (
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/quant"
)

// loraTask is one record of lora.cu's task table.
type loraTask struct {
	a, bt       uint64
	scale       float32
	rank, f16   int
	rows, ids   []int32
	task, ntask int
}

// loraTasksOf reads the task table at meta (grid x tasks).
func loraTasksOf(f *fakeDriver, meta uint64, ntask int) []loraTask {
	tab := f.i32s(meta, ntask*loraRec)
	out := make([]loraTask, ntask)
	for t := range out {
		r := tab[t*loraRec : (t+1)*loraRec]
		nr := int(r[7])
		if nr < 1 || nr > loraRows || r[5] < 1 {
			panic(fmt.Sprintf("fake: lora task %d with %d rows, rank %d", t, nr, r[5]))
		}
		out[t] = loraTask{
			a:     uint64(uint32(r[0])) | uint64(uint32(r[1]))<<32,
			bt:    uint64(uint32(r[2])) | uint64(uint32(r[3]))<<32,
			scale: math.Float32frombits(uint32(r[4])), rank: int(r[5]), f16: int(r[6]),
			rows: r[8 : 8+nr], ids: r[16 : 16+nr], task: t, ntask: ntask,
		}
	}
	return out
}

// loraMat reads a pair's matrix of n values (F16 or F32) as float32.
func loraMat(f *fakeDriver, p uint64, f16 bool, n int) []float32 {
	out := make([]float32, n)
	if f16 {
		for i, h := range f.u16s(p, n) {
			out[i] = quant.F16ToF32(h)
		}
		return out
	}
	copy(out, f.f32s(p, n))
	return out
}

// loraShrinkKernel is lora_shrink(c, x, meta, in, maxRank): per task and
// rank j, each lane's sum over i ≡ lane (mod 32), then the butterfly.
func loraShrinkKernel(f *fakeDriver, grid [3]uint32, a []uint64) {
	in, maxRank := i32(a[3]), i32(a[4])
	ntask := int(grid[0])
	if want := [3]uint32{uint32(ntask), uint32(ceilDiv(maxRank, 4)), 1}; grid != want {
		panic(fmt.Sprintf("fake: lora_shrink grid %v, want %v", grid, want))
	}
	c := f.f32s(a[0], ntask*loraRows*maxRank)
	for _, t := range loraTasksOf(f, a[2], ntask) {
		if t.rank > maxRank {
			panic("fake: lora task of a rank above maxRank")
		}
		am := loraMat(f, t.a, t.f16 != 0, t.rank*in)
		for j := range t.rank {
			for r, row := range t.rows {
				x := f.f32s(a[1]+uint64(4*int(row)*in), in)
				var lanes [32]float32
				for i := range in {
					w := am[j*in+i]
					xv := x[i]
					if t.f16 != 0 {
						xv = quant.F16ToF32(quant.F32ToF16(xv))
					}
					lanes[i%32] += w * xv
				}
				c[(t.task*loraRows+r)*maxRank+j] = t.scale * warpSum(lanes)
			}
		}
	}
}

// loraShrinkEmbedKernel is lora_shrink_embed(c, meta, in, maxRank).
func loraShrinkEmbedKernel(f *fakeDriver, grid [3]uint32, a []uint64) {
	in, maxRank := i32(a[2]), i32(a[3])
	ntask := int(grid[0])
	c := f.f32s(a[0], ntask*loraRows*maxRank)
	for _, t := range loraTasksOf(f, a[1], ntask) {
		am := loraMat(f, t.a, t.f16 != 0, t.rank*in)
		for j := range t.rank {
			for r, id := range t.ids {
				if id < 0 || int(id) >= in {
					panic(fmt.Sprintf("fake: lora_shrink_embed of token %d of %d", id, in))
				}
				c[(t.task*loraRows+r)*maxRank+j] = t.scale * am[j*in+int(id)]
			}
		}
	}
}

// loraExpandKernel is lora_expand(dst, c, meta, out, maxRank): an FMA per
// rank, in order.
func loraExpandKernel(f *fakeDriver, grid [3]uint32, a []uint64) {
	out, maxRank := i32(a[3]), i32(a[4])
	ntask := int(grid[0])
	f.checkGrid("lora_expand", grid, ntask, out)
	c := f.f32s(a[1], ntask*loraRows*maxRank)
	for _, t := range loraTasksOf(f, a[2], ntask) {
		bt := loraMat(f, t.bt, t.f16 != 0, t.rank*out)
		for r, row := range t.rows {
			d := f.f32s(a[0]+uint64(4*int(row)*out), out)
			cr := c[(t.task*loraRows+r)*maxRank:]
			for o := range d {
				acc := d[o]
				for j := range t.rank {
					acc = float32(math.FMA(float64(cr[j]), float64(bt[j*out+o]), float64(acc)))
				}
				d[o] = acc
			}
		}
	}
}
