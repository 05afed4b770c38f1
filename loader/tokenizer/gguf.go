package tokenizer

import (
	"fmt"

	"github.com/hearth-llm/hearth/loader/gguf"
)

// GGUF metadata keys (llama.cpp's names; "seperator" is spelled as there).
const (
	keyModel        = "tokenizer.ggml.model"
	keyPre          = "tokenizer.ggml.pre"
	keyTokens       = "tokenizer.ggml.tokens"
	keyScores       = "tokenizer.ggml.scores"
	keyTypes        = "tokenizer.ggml.token_type"
	keyMerges       = "tokenizer.ggml.merges"
	keyAddBOS       = "tokenizer.ggml.add_bos_token"
	keyAddEOS       = "tokenizer.ggml.add_eos_token"
	keyAddSEP       = "tokenizer.ggml.add_sep_token"
	keyAddPrefix    = "tokenizer.ggml.add_space_prefix"
	keyLowercase    = "tokenizer.ggml.normalizer.lowercase"
	keyStripAccents = "tokenizer.ggml.normalizer.strip_accents"
	keyGeneralName  = "general.name"
	keyGeneralArch  = "general.architecture"
	keyPrefixDepr   = "tokenizer.ggml.prefix_token_id"
	keySuffixDepr   = "tokenizer.ggml.suffix_token_id"
	keyMiddleDepr   = "tokenizer.ggml.middle_token_id"
	keyBOS          = "tokenizer.ggml.bos_token_id"
	keyEOS          = "tokenizer.ggml.eos_token_id"
	keyEOT          = "tokenizer.ggml.eot_token_id"
	keyEOM          = "tokenizer.ggml.eom_token_id"
	keyUNK          = "tokenizer.ggml.unknown_token_id"
	keySEP          = "tokenizer.ggml.seperator_token_id"
	keyPAD          = "tokenizer.ggml.padding_token_id"
	keyMASK         = "tokenizer.ggml.mask_token_id"
	keyFIMPre       = "tokenizer.ggml.fim_pre_token_id"
	keyFIMSuf       = "tokenizer.ggml.fim_suf_token_id"
	keyFIMMid       = "tokenizer.ggml.fim_mid_token_id"
	keyFIMPad       = "tokenizer.ggml.fim_pad_token_id"
	keyFIMRep       = "tokenizer.ggml.fim_rep_token_id"
	keyFIMSep       = "tokenizer.ggml.fim_sep_token_id"
)

// VocabFromGGUF reads a model's tokenizer metadata. Absent optional keys take
// llama.cpp's defaults (Vocab.SetDefaults); a missing required key is an
// error naming it. The Vocab does not refer to f after it returns.
func VocabFromGGUF(f *gguf.File) (*Vocab, error) {
	v := &Vocab{}
	var ok bool
	if v.Model, ok = f.String(keyModel); !ok {
		return nil, fmt.Errorf("tokenizer: missing or non-string %s", keyModel)
	}
	v.Pre, _ = f.String(keyPre)
	if v.Tokens, ok = f.Strings(keyTokens); !ok {
		return nil, fmt.Errorf("tokenizer: missing or non-string-array %s", keyTokens)
	}
	n := len(v.Tokens)
	if _, present := f.Get(keyScores); present {
		if v.Scores, ok = f.Float32s(keyScores); !ok {
			ints, ok := f.Int32s(keyScores) // llama.cpp accepts int32 scores too
			if !ok {
				return nil, fmt.Errorf("tokenizer: %s is not a float or int array", keyScores)
			}
			v.Scores = make([]float32, len(ints))
			for i, x := range ints {
				v.Scores[i] = float32(x)
			}
		}
		if len(v.Scores) < n {
			return nil, fmt.Errorf("tokenizer: %s has %d entries for %d tokens", keyScores, len(v.Scores), n)
		}
	}
	if _, present := f.Get(keyTypes); present {
		if v.Types, ok = f.Int32s(keyTypes); !ok {
			return nil, fmt.Errorf("tokenizer: %s is not an integer array", keyTypes)
		}
		if len(v.Types) < n {
			return nil, fmt.Errorf("tokenizer: %s has %d entries for %d tokens", keyTypes, len(v.Types), n)
		}
	}
	if v.Model == ModelBPE || v.Model == ModelGemma4 {
		if v.Merges, ok = f.Strings(keyMerges); !ok {
			return nil, fmt.Errorf("tokenizer: missing or non-string-array %s (required for model %q)", keyMerges, v.Model)
		}
	}
	v.Name, _ = f.String(keyGeneralName)
	v.Arch, _ = f.String(keyGeneralArch)

	v.SetDefaults()
	for _, k := range []struct {
		key string
		id  *int32
	}{
		{keyBOS, &v.BOS}, {keyEOS, &v.EOS}, {keyEOT, &v.EOT}, {keyEOM, &v.EOM},
		{keyUNK, &v.UNK}, {keySEP, &v.SEP}, {keyPAD, &v.PAD}, {keyMASK, &v.MASK},
		{keyFIMPre, &v.FIMPre}, {keyFIMSuf, &v.FIMSuf}, {keyFIMMid, &v.FIMMid},
		{keyFIMPad, &v.FIMPad}, {keyFIMRep, &v.FIMRep}, {keyFIMSep, &v.FIMSep},
		{keyPrefixDepr, &v.FIMPre}, {keySuffixDepr, &v.FIMSuf}, {keyMiddleDepr, &v.FIMMid},
	} {
		// As in llama.cpp, an id outside the vocabulary keeps the default.
		if x, ok := f.Uint(k.key); ok && x < uint64(n) {
			*k.id = int32(x)
		}
	}
	for _, k := range []struct {
		key string
		b   *bool
	}{
		{keyAddBOS, &v.AddBOS}, {keyAddEOS, &v.AddEOS}, {keyAddSEP, &v.AddSEP},
		{keyAddPrefix, &v.AddSpacePrefix}, {keyLowercase, &v.Lowercase},
	} {
		if b, ok := f.Bool(k.key); ok {
			*k.b = b
		}
	}
	v.StripAccents = v.Lowercase
	if b, ok := f.Bool(keyStripAccents); ok {
		v.StripAccents = b
	}
	return v, nil
}
