package tokenizer

// Token types as GGUF stores them in tokenizer.ggml.token_type.
const (
	TypeUndefined   int32 = 0
	TypeNormal      int32 = 1
	TypeUnknown     int32 = 2
	TypeControl     int32 = 3
	TypeUserDefined int32 = 4
	TypeUnused      int32 = 5
	TypeByte        int32 = 6
)

// Tokenizer models (tokenizer.ggml.model).
const (
	ModelSPM    = "llama"  // SentencePiece BPE over token scores, <0xXX> byte fallback
	ModelBPE    = "gpt2"   // byte-level BPE over merge ranks
	ModelWPM    = "bert"   // WordPiece
	ModelGemma4 = "gemma4" // BPE over merge ranks on UTF-8 with "▁" for spaces, <0xXX> byte fallback
)

// Vocab is the tokenizer data of a model, as GGUF metadata holds it. New
// takes it as it is: every field is the effective value (SetDefaults fills in
// what llama.cpp assumes when a key is absent). Token ids are -1 for "none".
type Vocab struct {
	Model string // tokenizer.ggml.model: ModelSPM, ModelBPE, ModelWPM or ModelGemma4
	Pre   string // tokenizer.ggml.pre: the BPE pre-tokenizer ("" = "default"; ignored for gemma4)

	Tokens []string  // tokenizer.ggml.tokens, indexed by token id
	Scores []float32 // tokenizer.ggml.scores; nil = all 0
	Types  []int32   // tokenizer.ggml.token_type (Type*); nil = all TypeNormal
	Merges []string  // tokenizer.ggml.merges (BPE, gemma4), "left right", highest priority first

	BOS, EOS, UNK, PAD, SEP, MASK, EOT, EOM int32
	// Fill-in-the-middle tokens.
	FIMPre, FIMSuf, FIMMid, FIMPad, FIMRep, FIMSep int32

	// AddBOS is overridden to true by New for the gemma4 pre-tokenizer, as
	// llama.cpp does (its PR 21500).
	AddBOS, AddEOS, AddSEP bool
	AddSpacePrefix         bool // SPM: prefix the text with a space; all: Decode drops it

	// BERT normalizer (WPM only).
	Lowercase, StripAccents bool

	// Name (general.name) and Arch (general.architecture) select llama.cpp's
	// per-model token attribute fixes (phi-3, jina, modern-bert).
	Name, Arch string
}

// SetDefaults sets the special token ids and flags to what llama.cpp assumes
// for v.Model and v.Pre when the metadata does not say (its defaults that fall
// outside v.Tokens become -1). Call it before applying the metadata's values.
func (v *Vocab) SetDefaults() {
	ids := []*int32{&v.BOS, &v.EOS, &v.UNK, &v.PAD, &v.SEP, &v.MASK, &v.EOT, &v.EOM,
		&v.FIMPre, &v.FIMSuf, &v.FIMMid, &v.FIMPad, &v.FIMRep, &v.FIMSep}
	for _, p := range ids {
		*p = -1
	}
	v.AddBOS, v.AddEOS, v.AddSEP, v.AddSpacePrefix = false, false, false, false
	v.Lowercase, v.StripAccents = true, true
	switch v.Model {
	case ModelSPM:
		v.BOS, v.EOS, v.UNK = 1, 2, 0
		v.AddSpacePrefix = true
		v.AddBOS = true
	case ModelWPM:
		v.BOS, v.UNK, v.SEP, v.PAD, v.MASK = 101, 100, 102, 0, 103
		v.AddBOS, v.AddSEP = true, true
	case ModelBPE:
		v.BOS, v.EOS = 11, 11
		if cfg, ok := preConfigs[v.Pre]; ok {
			v.AddBOS = cfg.addBOS
			v.AddSEP = cfg.addSEP
			if cfg.noBOS {
				v.BOS = -1
			}
		}
	case ModelGemma4:
		// No default special tokens: they come from the metadata.
		v.AddBOS = preGemma4.addBOS
	}
	for _, p := range ids {
		if *p >= int32(len(v.Tokens)) {
			*p = -1
		}
	}
}
