package servertest

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/sample"
	"github.com/hearth-llm/hearth/runtime/server"
)

// Preserve checks Request.Preserve with load's runner over the tiny
// Llama-3 (BPE) model: a control token's text is in the output when it is
// preserved, and a grammar literal spelled like it is matched, whichever
// tokens the model takes; the end-of-generation token still ends
// generation.
func Preserve(t *testing.T, load server.Loader) {
	r, err := load(context.Background(), filepath.Join(testdata.Dir(t, "models"), "tiny-llama-bpe-Q4_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ids, err := r.Tokenize("<|start_header_id|>", false, true)
	if err != nil || len(ids) != 1 {
		t.Fatalf("<|start_header_id|>: %v %v", ids, err)
	}
	id := ids[0]
	const want = `"<|start_header_id|>"`
	g, err := grammar.FromSchema([]byte(`{"const":"<|start_header_id|>"}`))
	if err != nil {
		t.Fatal(err)
	}
	greedy := sample.DefaultOptions()
	greedy.Temperature = 0
	prompt, _ := r.Tokenize("<|start_header_id|>user<|end_header_id|>\n\nSay hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", true, true)
	gen := func(req *server.Request) (string, server.Result) {
		t.Helper()
		var sb strings.Builder
		res, err := r.Generate(context.Background(), req, func(p server.Piece) error { sb.WriteString(p.Text); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return sb.String(), res
	}
	// Seeds until the sampler takes the control token at least once (at
	// temperature 1 among the grammar's choices, most seeds do).
	took := false
	for seed := int64(0); seed < 40 && !took; seed++ {
		o := greedy
		o.Temperature, o.Seed = 1, seed
		text, res := gen(&server.Request{Prompt: prompt, NumPredict: 16, Sampling: o, Grammar: g, Preserve: []int32{id}, Logprobs: true})
		if strings.TrimSpace(text) != want {
			t.Fatalf("seed %d: %q (tokens %v), want %q", seed, text, res.Tokens, want)
		}
		took = slices.Contains(res.Tokens, id)
	}
	if !took {
		t.Error("no seed sampled the preserved token")
	}
	// Without a grammar: the token's text appears wherever it is sampled;
	// unpreserved, it prints nothing.
	text, res := gen(&server.Request{Prompt: prompt, NumPredict: 12, Sampling: greedy, Preserve: []int32{id}})
	plain, res2 := gen(&server.Request{Prompt: prompt, NumPredict: 12, Sampling: greedy})
	if !slices.Equal(res.Tokens, res2.Tokens) {
		t.Fatalf("Preserve changed the tokens: %v vs %v", res.Tokens, res2.Tokens)
	}
	if n := strings.Count(text, "<|start_header_id|>") - strings.Count(plain, "<|start_header_id|>"); n != count(res.Tokens, id) {
		t.Errorf("%d sampled, %d more in the text: %q vs %q", count(res.Tokens, id), n, text, plain)
	}
}

func count(s []int32, v int32) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
