package bert_test

import (
	"bytes"
	"errors"
	"github.com/hearth-llm/hearth/internal/fuzzgguf"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

var testModels = []string{"bert-tiny.gguf", "nomic-bert-tiny.gguf"}

func parseFile(t testing.TB, name string) *gguf.File {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// rewrite returns src with the metadata in set changed (a nil Value
// deletes nothing: keys are only set) and the tensors in drop left out.
func rewrite(t testing.TB, src *gguf.File, set map[string]gguf.Value, drop ...string) *gguf.File {
	t.Helper()
	w := gguf.NewWriter()
	w.CopyMetadata(src)
	for k, v := range set {
		w.Set(k, v)
	}
outer:
	for i := range src.Tensors {
		ti := &src.Tensors[i]
		for _, d := range drop {
			if ti.Name == d {
				continue outer
			}
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, src.Data(ti)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestHostileMetadata: metadata that disagrees with the tensors, or
// tensors missing, is an error from Load, never a panic or an allocation
// of what the metadata claims.
func TestHostileMetadata(t *testing.T) {
	be := cpu.New(1)
	defer be.Close()
	huge := gguf.Uint32(math.MaxInt32)
	cases := []struct {
		name  string
		model string
		set   map[string]gguf.Value
		drop  []string
	}{
		{"block_count huge", "bert-tiny.gguf", map[string]gguf.Value{"bert.block_count": huge}, nil},
		{"block_count one too many", "nomic-bert-tiny.gguf", map[string]gguf.Value{"nomic-bert.block_count": gguf.Uint32(3)}, nil},
		{"block_count zero", "bert-tiny.gguf", map[string]gguf.Value{"bert.block_count": gguf.Uint32(0)}, nil},
		{"embedding_length huge", "bert-tiny.gguf", map[string]gguf.Value{"bert.embedding_length": huge}, nil},
		{"head_count zero", "bert-tiny.gguf", map[string]gguf.Value{"bert.attention.head_count": gguf.Uint32(0)}, nil},
		{"head_count huge", "nomic-bert-tiny.gguf", map[string]gguf.Value{"nomic-bert.attention.head_count": huge}, nil},
		{"head_count not a divisor", "nomic-bert-tiny.gguf", map[string]gguf.Value{"nomic-bert.attention.head_count": gguf.Uint32(3)}, nil},
		{"context_length huge", "bert-tiny.gguf", map[string]gguf.Value{"bert.context_length": huge}, nil},
		{"feed_forward_length huge", "bert-tiny.gguf", map[string]gguf.Value{"bert.feed_forward_length": huge}, nil},
		{"pooling_type unknown", "bert-tiny.gguf", map[string]gguf.Value{"bert.pooling_type": gguf.Uint32(9)}, nil},
		{"pooling_type rank", "bert-tiny.gguf", map[string]gguf.Value{"bert.pooling_type": gguf.Uint32(4)}, nil},
		{"causal not a bool", "bert-tiny.gguf", map[string]gguf.Value{"bert.attention.causal": gguf.Uint32(1)}, nil},
		{"rope dimension past the head", "nomic-bert-tiny.gguf", map[string]gguf.Value{"nomic-bert.rope.dimension_count": gguf.Uint32(1 << 20)}, nil},
		{"experts", "nomic-bert-tiny.gguf", map[string]gguf.Value{"nomic-bert.moe_every_n_layers": gguf.Uint32(2)}, nil},
		{"no token embedding", "bert-tiny.gguf", nil, []string{"token_embd.weight"}},
		{"no positions", "bert-tiny.gguf", nil, []string{"position_embd.weight"}},
		{"no embedding norm bias", "bert-tiny.gguf", nil, []string{"token_embd_norm.bias"}},
		{"no output norm", "bert-tiny.gguf", nil, []string{"blk.1.layer_output_norm.weight"}},
		{"no attention norm bias", "nomic-bert-tiny.gguf", nil, []string{"blk.0.attn_output_norm.bias"}},
		{"no fused qkv", "nomic-bert-tiny.gguf", nil, []string{"blk.1.attn_qkv.weight"}},
		{"no gate", "nomic-bert-tiny.gguf", nil, []string{"blk.0.ffn_gate.weight"}},
		{"no ffn down", "bert-tiny.gguf", nil, []string{"blk.0.ffn_down.weight"}},
	}
	srcs := map[string]*gguf.File{}
	for _, name := range testModels {
		srcs[name] = parseFile(t, name)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := rewrite(t, srcs[c.model], c.set, c.drop...)
			m, err := arch.Load(f, be)
			if err == nil {
				t.Fatalf("loaded %+v", m.Info())
			}
			t.Log(err)
		})
	}
}

// TestHostileBatch: a batch the model cannot run is an error.
func TestHostileBatch(t *testing.T) {
	be := cpu.New(1)
	defer be.Close()
	for _, name := range testModels {
		m := loadModel(t, be, name)
		info := m.Info()
		kv, err := m.NewKV(8)
		if err != nil {
			t.Fatal(err)
		}
		b := arch.Single([]int32{101, 102}, 0, kv, true)
		if _, err := m.Forward(b); !errors.Is(err, arch.ErrEmbeddingOnly) {
			t.Errorf("%s: logits asked: %v, want ErrEmbeddingOnly", name, err)
		}
		bad := []*arch.Batch{
			{IDs: []int32{101, int32(info.VocabSize)}, Pos: []int32{0, 1}, Seq: []int32{0, 0}, KVs: []backend.KV{kv}, Hidden: true},
			{IDs: []int32{101, -1}, Pos: []int32{0, 1}, Seq: []int32{0, 0}, KVs: []backend.KV{kv}, Hidden: true},
			{IDs: []int32{101, 102}, Pos: []int32{0, 8}, Seq: []int32{0, 0}, KVs: []backend.KV{kv}, Hidden: true},
			{IDs: []int32{101, 102}, Pos: []int32{0, 1}, Seq: []int32{0, 1}, KVs: []backend.KV{kv}, Hidden: true},
			{IDs: []int32{101, 102}, Pos: []int32{0, 1}, Seq: []int32{0, 0}, KVs: []backend.KV{kv}, Hidden: true, Outputs: []int{2}},
			{IDs: []int32{101, 102}, Pos: []int32{0}, Seq: []int32{0, 0}, KVs: []backend.KV{kv}, Hidden: true},
			{Hidden: true},
		}
		for i, b := range bad {
			if _, err := m.Forward(b); err == nil {
				t.Errorf("%s: bad batch %d ran", name, i)
			} else if !strings.Contains(err.Error(), "out of range") && i < 2 {
				t.Errorf("%s: bad batch %d: %v", name, i, err)
			}
			if err := be.Err(); err != nil {
				t.Errorf("%s: bad batch %d left an error pending: %v", name, i, err)
			}
		}
		good := &arch.Batch{IDs: []int32{101, 102}, Pos: []int32{0, 1}, Seq: []int32{0, 0}, KVs: []backend.KV{kv}, Hidden: true, Outputs: []int{1}}
		if _, err := m.Forward(good); err != nil {
			t.Errorf("%s: a good batch after the bad ones: %v", name, err)
		}
	}
	// bert's learned positions end at its trained context.
	m := loadModel(t, be, "bert-tiny.gguf")
	ctx := m.Info().ContextLength
	kv, err := m.NewKV(ctx + 1)
	if err != nil {
		t.Fatal(err)
	}
	b := &arch.Batch{IDs: []int32{101}, Pos: []int32{int32(ctx)}, Seq: []int32{0}, KVs: []backend.KV{kv}, Hidden: true, Outputs: []int{0}}
	if _, err := m.Forward(b); err == nil {
		t.Errorf("position %d of a %d-position model ran", ctx, ctx)
	}
}

// FuzzLoad rewrites one numeric metadata entry of a test model (zero,
// huge, anything) and loads the result: an error, or a model that runs a
// two-token forward pass, never a panic.
func FuzzLoad(f *testing.F) {
	var srcs []*gguf.File
	var keys [][]int
	for _, name := range testModels {
		src := parseFile(f, name)
		srcs, keys = append(srcs, src), append(keys, fuzzgguf.NumericKeys(src))
	}
	for m := range srcs {
		for i := range keys[m] {
			f.Add(uint8(m), uint8(i), uint64(0))
			f.Add(uint8(m), uint8(i), uint64(1)<<31)
			f.Add(uint8(m), uint8(i), ^uint64(0))
		}
	}
	be := cpu.New(1)
	f.Cleanup(be.Close)
	f.Fuzz(func(t *testing.T, model, which uint8, v uint64) {
		src := srcs[int(model)%len(srcs)]
		k := keys[int(model)%len(srcs)]
		kv := src.KV[k[int(which)%len(k)]]
		file := rewrite(t, src, map[string]gguf.Value{kv.Key: fuzzgguf.Numeric(kv.Value.Type, v)})
		m, err := arch.Load(file, be)
		if err != nil {
			return
		}
		kvc, err := m.NewKV(2)
		if err != nil {
			return
		}
		m.Forward(&arch.Batch{IDs: []int32{101, 102}, Pos: []int32{0, 1}, Seq: []int32{0, 0},
			KVs: []backend.KV{kvc}, Outputs: []int{0, 1}, Hidden: true})
	})
}
