package tokenizer

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// goldenFile is the part of a shared/golden/<model>/<slug>.json this package
// checks (llama.cpp's llama_tokenize / llama_token_to_piece / llama_detokenize).
type goldenFile struct {
	ModelFile       string   `json:"model_file"`
	Prompt          string   `json:"prompt"`
	PromptIDs       []int32  `json:"prompt_ids"`
	PromptPiecesHex []string `json:"prompt_pieces_hex"`
	GreedyIDs       []int32  `json:"greedy_ids"`
	GreedyPiecesHex []string `json:"greedy_pieces_hex"`
	GreedyTextHex   string   `json:"greedy_text_hex"`
	FullText        string   `json:"full_text"`
	GreedyFirstEOG  int      `json:"greedy_first_eog_index"`
	BOS             int32    `json:"bos_id"`
	EOS             int32    `json:"eos_id"`
	AddBOS          bool     `json:"vocab_add_bos"`
	AddEOS          bool     `json:"vocab_add_eos"`
	NVocab          int      `json:"n_vocab"`
}

// TestGolden checks, for every model with golden outputs, that Encode(prompt,
// true, false) gives llama.cpp's prompt ids, that Piece gives the bytes of
// llama_token_to_piece(special=true) for prompt and generated tokens, and
// that Decode/Detokenize give llama_detokenize's text.
func TestGolden(t *testing.T) {
	golden := testdata.Dir(t, "golden")
	models := testdata.Dir(t, "models")
	files, err := filepath.Glob(filepath.Join(golden, "*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		testdata.Missing(t, filepath.Join(golden, "*", "*.json"))
	}
	for _, path := range files {
		rel, _ := filepath.Rel(golden, path)
		t.Run(rel, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var g goldenFile
			if err := json.Unmarshal(b, &g); err != nil {
				t.Fatal(err)
			}
			modelPath := filepath.Join(models, g.ModelFile)
			if _, err := os.Stat(modelPath); err != nil {
				testdata.Missing(t, modelPath)
			}
			tk := loadGGUF(t, modelPath)
			if tk.NumTokens() != g.NVocab || tk.BOS() != g.BOS || tk.EOS() != g.EOS ||
				tk.AddBOS() != g.AddBOS || tk.AddEOS() != g.AddEOS {
				t.Errorf("n_vocab/bos/eos/add_bos/add_eos = %d/%d/%d/%v/%v, want %d/%d/%d/%v/%v",
					tk.NumTokens(), tk.BOS(), tk.EOS(), tk.AddBOS(), tk.AddEOS(),
					g.NVocab, g.BOS, g.EOS, g.AddBOS, g.AddEOS)
			}
			if got := tk.Encode(g.Prompt, true, false); !slices.Equal(got, g.PromptIDs) {
				t.Errorf("Encode(%q):\n got  %v\n want %v", g.Prompt, got, g.PromptIDs)
			}
			checkPieces(t, tk, "prompt", g.PromptIDs, g.PromptPiecesHex)
			checkPieces(t, tk, "greedy", g.GreedyIDs, g.GreedyPiecesHex)

			want, err := hex.DecodeString(g.GreedyTextHex)
			if err != nil {
				t.Fatal(err)
			}
			if got := tk.Decode(g.GreedyIDs); got != string(want) {
				t.Errorf("Decode(greedy):\n got  %q\n want %q", got, want)
			}
			all := append(slices.Clone(g.PromptIDs), g.GreedyIDs...)
			full, _ := validPrefix([]byte(tk.Detokenize(all, true, false)), true)
			if full != g.FullText {
				t.Errorf("Detokenize(prompt+greedy, remove_special):\n got  %q\n want %q", full, g.FullText)
			}
			firstEOG := -1
			for i, id := range g.GreedyIDs {
				if tk.IsEOG(id) {
					firstEOG = i
					break
				}
			}
			if firstEOG != g.GreedyFirstEOG {
				t.Errorf("first EOG in greedy ids at %d, want %d", firstEOG, g.GreedyFirstEOG)
			}
		})
	}
}

func checkPieces(t *testing.T, tk *Tokenizer, what string, ids []int32, hexes []string) {
	t.Helper()
	if len(ids) != len(hexes) {
		t.Fatalf("%s: %d ids, %d pieces", what, len(ids), len(hexes))
	}
	for i, id := range ids {
		if got := hex.EncodeToString(tk.Piece(id)); got != hexes[i] {
			t.Errorf("%s[%d]: Piece(%d) = %s, want %s", what, i, id, got, hexes[i])
		}
	}
}
