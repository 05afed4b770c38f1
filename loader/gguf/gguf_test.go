package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/quant"
)

// sample builds a small file with every value type, a nested array and two
// tensors.
func sample(t testing.TB) []byte {
	w := NewWriter()
	w.Set("general.architecture", String("llama"))
	w.Set("u8", Uint8(200))
	w.Set("i8", Int8(-5))
	w.Set("u16", Uint16(60000))
	w.Set("i16", Int16(-30000))
	w.Set("u32", Uint32(4000000000))
	w.Set("i32", Int32(-2000000000))
	w.Set("f32", Float32(1.5))
	w.Set("bool", Bool(true))
	w.Set("u64", Uint64(1<<60))
	w.Set("i64", Int64(-1<<60))
	w.Set("f64", Float64(math.Pi))
	w.Set("strings", ArrayValue([]string{"a", "", "ünï"}))
	w.Set("floats", ArrayValue([]float32{1, 2, 3}))
	w.Set("nested", ArrayValue([]Array{{Elem: TypeInt32, Values: []int32{1, 2}}, {Elem: TypeString, Values: []string{"x"}}}))
	if err := w.AddTensor("a", quant.F32, []uint64{4, 2}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	q := make([]byte, 2*18)
	for i := range q {
		q[i] = byte(i)
	}
	if err := w.AddTensor("b", quant.Q4_0, []uint64{64}, q); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	b := sample(t)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || len(f.KV) != 15 || len(f.Tensors) != 2 {
		t.Fatalf("version %d, %d kv, %d tensors", f.Version, len(f.KV), len(f.Tensors))
	}
	checks := []struct {
		key  string
		want any
	}{
		{"u8", uint8(200)}, {"i8", int8(-5)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4000000000)}, {"i32", int32(-2000000000)}, {"f32", float32(1.5)},
		{"bool", true}, {"u64", uint64(1 << 60)}, {"i64", int64(-1 << 60)}, {"f64", math.Pi},
	}
	for _, c := range checks {
		v, ok := f.Get(c.key)
		if !ok || v.Raw() != c.want {
			t.Errorf("%s = %v (%T), want %v", c.key, v.Raw(), v.Raw(), c.want)
		}
	}
	if s, _ := f.Strings("strings"); !reflect.DeepEqual(s, []string{"a", "", "ünï"}) {
		t.Errorf("strings = %q", s)
	}
	if n, ok := f.Uint("i32"); ok {
		t.Errorf("Uint of a negative value = %d, want false", n)
	}
	if n, ok := f.Uint("u32"); !ok || n != 4000000000 {
		t.Errorf("Uint(u32) = %d %v", n, ok)
	}
	a, _ := f.Array("nested")
	if inner := a.Values.([]Array); len(inner) != 2 || !reflect.DeepEqual(inner[0].Values, []int32{1, 2}) {
		t.Errorf("nested = %+v", a)
	}
	tb, _ := f.Tensor("b")
	if tb.Type != quant.Q4_0 || tb.Size != 36 || tb.Offset%32 != 0 || f.Data(tb)[5] != 5 {
		t.Errorf("tensor b = %+v", tb)
	}
	// Writing the parsed file again gives the same bytes.
	w := NewWriter()
	w.CopyMetadata(f)
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, f.Data(ti)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	w.WriteTo(&buf)
	if !bytes.Equal(buf.Bytes(), b) {
		t.Error("rewrite differs from the original")
	}
}

// TestRealModels parses every shared model and checks that rewriting it with
// our writer reproduces the file byte for byte: the strongest check that
// llama.cpp reads what we write, since these files were written by
// llama.cpp's own gguf-py.
func TestRealModels(t *testing.T) {
	dir := testdata.Dir(t, "models")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	vocabs, _ := filepath.Glob(filepath.Join(testdata.Dir(t, "vocab"), "*.gguf"))
	for _, p := range append(paths, vocabs...) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if arch, _ := f.String("general.architecture"); arch == "" {
				t.Error("no general.architecture")
			}
			orig, _ := os.ReadFile(p)
			w := NewWriter()
			w.CopyMetadata(f)
			if err := w.CopyTensors(f); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := w.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) == 0 && len(orig) > buf.Len() && !bytes.ContainsFunc(orig[buf.Len():], func(r rune) bool { return r != 0 }) {
				orig = orig[:buf.Len()] // some writers pad a tensorless file's end; we do not
			}
			if !bytes.Equal(buf.Bytes(), orig) {
				n := 0
				for n < len(orig) && n < buf.Len() && orig[n] == buf.Bytes()[n] {
					n++
				}
				t.Errorf("rewritten file differs from the original at byte %d (sizes %d, %d)", n, buf.Len(), len(orig))
			}
		})
	}
}

// TestTruncated cuts a file at every length: each prefix must give an error
// wrapping ErrInvalid, never a panic.
func TestTruncated(t *testing.T) {
	b := sample(t)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	last := &f.Tensors[len(f.Tensors)-1]
	end := int(f.DataOffset + last.Offset + last.Size) // what follows is padding
	for n := 0; n < end; n++ {
		_, err := Parse(b[:n])
		if err == nil {
			t.Fatalf("prefix of %d bytes parsed without error", n)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("prefix of %d: %v does not wrap ErrInvalid", n, err)
		}
	}
}

// patch returns a copy of b with the bytes at off replaced.
func patch(b []byte, off int, v ...byte) []byte {
	c := append([]byte(nil), b...)
	copy(c[off:], v)
	return c
}

func le64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

func TestHostile(t *testing.T) {
	b := sample(t)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	_ = f
	// Offsets in the sample: magic 0, version 4, n_tensors 8, n_kv 16, first key at 24.
	firstValue := 24 + 8 + len("general.architecture") + 4
	tensorA := bytes.Index(b, []byte("\x01\x00\x00\x00\x00\x00\x00\x00a\x02\x00\x00\x00")) // name "a", n_dims 2
	if tensorA < 0 {
		t.Fatal("tensor a not found in the sample")
	}
	dims := tensorA + 8 + 1 + 4
	typeOff := dims + 16
	offOff := typeOff + 4
	cases := []struct {
		name, want string
		b          []byte
	}{
		{"bad magic", "magic", patch(b, 0, 'G', 'G', 'U', 'X')},
		{"version 1", "unsupported version 1", patch(b, 4, 1)},
		{"version 9", "unsupported version 9", patch(b, 4, 9)},
		{"huge tensor count", "tensor count", patch(b, 8, le64(1<<62)...)},
		{"huge kv count", "metadata count", patch(b, 16, le64(1<<40)...)},
		{"huge key length", "metadata[0].key", patch(b, 24, le64(1<<50)...)},
		{"huge string length", `metadata "general.architecture"`, patch(b, firstValue, le64(math.MaxUint64)...)},
		{"bad value type", "unknown value type 13", patch(b, firstValue-4, 13)},
		{"five dims", "5 dimensions", patch(b, tensorA+9, 5)},
		{"zero dims", "0 dimensions", patch(b, tensorA+9, 0)},
		{"dim overflow", "overflows", patch(patch(b, dims, le64(1<<40)...), dims+8, le64(1<<40)...)},
		{"unknown tensor type", "unknown tensor type 99", patch(b, typeOff, 99)},
		{"data past end", "past the end", patch(b, offOff, le64(1<<20)...)},
		{"unaligned data", "not a multiple of the alignment", patch(b, offOff, 4)},
		{"overlap", "overlaps", patch(b, offOff, le64(32)...)},
		{"row not whole blocks", "block size", patch(b, typeOff, byte(quant.Q4_0))},
		{"key not UTF-8", "metadata[0].key at offset 24: \"\\xffeneral.architecture\" is not valid UTF-8", patch(b, 32, 0xff)},
		{"value not UTF-8", `metadata "general.architecture" at offset ` + fmt.Sprint(firstValue) + ": string value is not valid UTF-8", patch(b, firstValue+8+1, 0xc3)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b)
			if err == nil {
				t.Fatal("parsed without error")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want ErrInvalid mentioning %q", err, c.want)
			}
			if !strings.Contains(err.Error(), "offset") {
				t.Errorf("error %q names no offset", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("opening a directory succeeded")
	}
	empty := filepath.Join(t.TempDir(), "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample(f))
	// Headers of the shared models, when present, make realistic seeds.
	if dir, ok := testdata.Find("models"); ok {
		paths, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && len(b) > 4096 {
				f.Add(b[:4096])
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		for i := range fl.Tensors {
			_ = fl.Data(&fl.Tensors[i]) // must be in bounds
		}
	})
}
