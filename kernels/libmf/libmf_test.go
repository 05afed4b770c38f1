package libmf

import (
	"bufio"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestGlibc compares every function with glibc's results for the inputs
// in testdata/glibc.txt (made by testdata/make_glibc.py with glibc 2.36 on
// x86-64): random arguments over their ranges, large ones for the trig
// functions' big reduction, subnormals for logf, and the RoPE angles of
// four (base, head size) pairs as ggml iterates them. Bit for bit.
func TestGlibc(t *testing.T) {
	f, err := os.Open("testdata/glibc.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fns := map[string]func(float32) float32{"sinf": Sinf, "cosf": Cosf, "expf": Expf, "logf": Logf, "tanhf": Tanhf}
	count := map[string]int{}
	bad := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 3 {
			t.Fatalf("bad line %q", sc.Text())
		}
		in, err1 := strconv.ParseUint(fl[1], 16, 32)
		want, err2 := strconv.ParseUint(fl[2], 16, 32)
		fn := fns[fl[0]]
		if err1 != nil || err2 != nil || fn == nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		x := math.Float32frombits(uint32(in))
		got := math.Float32bits(fn(x))
		count[fl[0]]++
		if got != uint32(want) {
			if bad++; bad <= 10 {
				t.Errorf("%s(%g) = %g (%08x), glibc %g (%08x)", fl[0], x, math.Float32frombits(got), got, math.Float32frombits(uint32(want)), want)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Errorf("%d results differ from glibc's", bad)
	}
	t.Log(count)
}

// TestSpecial: the special values glibc's functions give.
func TestSpecial(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, c := range []struct {
		name string
		got  float32
		want float32
	}{
		{"expf(-inf)", Expf(-inf), 0}, {"expf(inf)", Expf(inf), inf}, {"expf(100)", Expf(100), inf},
		{"expf(-200)", Expf(-200), 0}, {"expf(0)", Expf(0), 1},
		{"logf(1)", Logf(1), 0}, {"logf(0)", Logf(0), -inf}, {"logf(inf)", Logf(inf), inf},
		{"sinf(0)", Sinf(0), 0}, {"cosf(0)", Cosf(0), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	for name, v := range map[string]float32{"expf(nan)": Expf(nan), "logf(-1)": Logf(-1), "sinf(inf)": Sinf(inf), "cosf(nan)": Cosf(nan)} {
		if !math.IsNaN(float64(v)) {
			t.Errorf("%s = %v, want NaN", name, v)
		}
	}
}
