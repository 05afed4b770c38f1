package tokenizer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrUnsupported is wrapped by the errors of New for a tokenizer model or
// pre-tokenizer this package does not implement.
var ErrUnsupported = errors.New("unsupported")

// Token attributes, llama.cpp's llama_token_attr bits.
type attr uint16

const (
	attrUnknown attr = 1 << iota
	attrUnused
	attrNormal
	attrControl
	attrUserDefined
	attrByte
	attrNormalized
	attrLStrip
	attrRStrip
	attrSingleWord

	attrUndefined attr = 0
)

type modelKind uint8

const (
	kindSPM modelKind = iota + 1
	kindBPE
	kindWPM
)

// Tokenizer converts between text and token ids exactly as llama.cpp's
// llama_tokenize and llama_token_to_piece / llama_detokenize do for the same
// GGUF metadata. It is immutable after New and safe for concurrent use.
type Tokenizer struct {
	kind modelKind
	pre  *preTokenizer // BPE only

	tokens []string
	scores []float32
	attrs  []attr
	ids    map[string]int32
	ranks  map[string]int32 // BPE: "left right" -> merge rank (nil with mergeIDs)

	// BPE: left<<32|right token ids -> rank<<32|merged token id
	mergeIDs map[uint64]uint64

	byteTokens  [256]int32 // the token each byte falls back to, -1 if none
	spmWordSafe bool       // SPM: words can be merged one at a time
	spmStyle    bool       // BPE: "▁" for spaces, UTF-8 symbols, <0xXX> bytes (gemma4)
	nlWords     bool       // BPE: a word of newlines that is a token is taken whole
	special     []int32    // tokens split out before tokenizing, longest first
	pieces      [][]byte   // token_to_piece(special=true) of every token
	eog         map[int32]bool

	bos, eos, unk, pad, sep, mask, eot, eom int32
	fimPre, fimSuf, fimMid, fimPad          int32
	fimRep, fimSep                          int32

	addBOS, addEOS, addSEP, addSpacePrefix bool
	ignoreMerges, cleanSpaces              bool
	lowercase, stripAccents                bool
	maxTokenLen                            int

	model, preName string
}

// New builds a tokenizer from v. v is not retained; its slices may be reused
// afterwards. Unknown models and pre-tokenizers are errors wrapping
// ErrUnsupported.
func New(v *Vocab) (*Tokenizer, error) {
	t := &Tokenizer{model: v.Model, preName: v.Pre}
	n := len(v.Tokens)
	if n == 0 {
		return nil, errors.New("tokenizer: empty vocabulary")
	}
	if n > 1<<30 {
		return nil, fmt.Errorf("tokenizer: %d tokens is too many", n)
	}
	if v.Scores != nil && len(v.Scores) < n {
		return nil, fmt.Errorf("tokenizer: %d scores for %d tokens", len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) < n {
		return nil, fmt.Errorf("tokenizer: %d token types for %d tokens", len(v.Types), n)
	}

	var cfg preConfig
	switch v.Model {
	case ModelSPM:
		t.kind = kindSPM
	case ModelWPM:
		t.kind = kindWPM
	case ModelBPE, ModelGemma4:
		t.kind = kindBPE
		if v.Model == ModelGemma4 {
			t.preName = "gemma4" // as llama.cpp, whatever tokenizer.ggml.pre says
		}
		var ok bool
		cfg, ok = preConfigs[t.preName]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %w tokenizer pre-tokenizer %q", ErrUnsupported, t.preName)
		}
		pre, err := newPreTokenizer(cfg.exprs, true)
		if err != nil {
			return nil, err
		}
		t.pre = pre
		t.ignoreMerges = cfg.ignoreMerges
		t.cleanSpaces = !cfg.keepSpaces
		t.spmStyle, t.nlWords = cfg.spmStyle, cfg.newlineWords
	default:
		return nil, fmt.Errorf("tokenizer: %w tokenizer model %q", ErrUnsupported, v.Model)
	}
	if t.kind == kindWPM {
		t.cleanSpaces = true
	}

	t.tokens = make([]string, n)
	t.scores = make([]float32, n)
	t.attrs = make([]attr, n)
	t.ids = make(map[string]int32, n)
	for i, s := range v.Tokens {
		if s == "" {
			s = fmt.Sprintf("[EMPTY_%d]", i)
		}
		if j, dup := t.ids[s]; dup {
			return nil, fmt.Errorf("tokenizer: duplicate token %q has ids %d and %d", s, j, i)
		}
		t.ids[s] = int32(i)
		t.tokens[i] = s
		t.maxTokenLen = max(t.maxTokenLen, len(s))
		if v.Scores != nil {
			t.scores[i] = v.Scores[i]
		}
		t.attrs[i] = attrNormal
		if v.Types != nil {
			t.attrs[i] = typeAttr(v.Types[i])
		}
	}

	if t.kind == kindBPE {
		t.ranks = buildRanks(v.Merges)
		t.buildMergeIDs()
	}

	valid := func(id int32) int32 {
		if id < 0 || int(id) >= n {
			return -1
		}
		return id
	}
	t.bos, t.eos, t.unk, t.pad = valid(v.BOS), valid(v.EOS), valid(v.UNK), valid(v.PAD)
	t.sep, t.mask, t.eot, t.eom = valid(v.SEP), valid(v.MASK), valid(v.EOT), valid(v.EOM)
	t.fimPre, t.fimSuf, t.fimMid = valid(v.FIMPre), valid(v.FIMSuf), valid(v.FIMMid)
	t.fimPad, t.fimRep, t.fimSep = valid(v.FIMPad), valid(v.FIMRep), valid(v.FIMSep)
	t.addBOS, t.addEOS, t.addSEP = v.AddBOS, v.AddEOS, v.AddSEP
	if cfg.forceBOS {
		t.addBOS = true
	}
	t.addSpacePrefix = v.AddSpacePrefix
	t.lowercase, t.stripAccents = v.Lowercase, v.StripAccents
	switch {
	case t.addBOS && t.bos < 0:
		return nil, errors.New("tokenizer: add_bos_token is true, but bos_token_id is not set")
	case t.addEOS && t.eos < 0:
		return nil, errors.New("tokenizer: add_eos_token is true, but eos_token_id is not set")
	case t.addSEP && t.sep < 0:
		return nil, errors.New("tokenizer: add_sep_token is true, but seperator_token_id is not set")
	}

	t.detectSpecial()
	t.buildEOG()

	for id, a := range t.attrs {
		if a&(attrControl|attrUserDefined|attrUnknown) != 0 {
			t.special = append(t.special, int32(id))
		}
	}
	// Longest first; llama.cpp's std::sort leaves ties in no set order, here
	// the lower id goes first.
	slices.SortStableFunc(t.special, func(a, b int32) int { return len(t.tokens[b]) - len(t.tokens[a]) })

	// Byte fallback: SPM tries <0xXX>, then the byte itself; byte-level BPE
	// the byte itself (a character of GPT-2's alphabet when printable),
	// gemma4's BPE only <0xXX>.
	for i := range t.byteTokens {
		t.byteTokens[i] = -1
		hex, raw := fmt.Sprintf("<0x%02X>", i), string([]byte{byte(i)})
		var names []string
		switch {
		case t.kind == kindSPM:
			names = []string{hex, raw}
		case t.kind == kindBPE && t.spmStyle:
			names = []string{hex}
		case t.kind == kindBPE:
			names = []string{raw}
		}
		for _, s := range names {
			if id, ok := t.ids[s]; ok {
				t.byteTokens[i] = id
				break
			}
		}
	}

	if t.kind == kindSPM {
		t.spmWordSafe = spmWordSafe(t.tokens)
	}
	t.buildPieces()
	t.modelAttrs(v)
	return t, nil
}

// buildRanks maps each merge "left right" to its rank (its index; the first
// of duplicates wins, as with llama.cpp's emplace).
func buildRanks(merges []string) map[string]int32 {
	ranks := make(map[string]int32, len(merges))
	for i, m := range merges {
		// llama.cpp splits at the first space after the first byte; a merge
		// without one can never match.
		if len(m) < 2 || strings.IndexByte(m[1:], ' ') < 0 {
			continue
		}
		if _, seen := ranks[m]; !seen {
			ranks[m] = int32(i)
		}
	}
	return ranks
}

func typeAttr(typ int32) attr {
	switch typ {
	case TypeUnknown:
		return attrUnknown
	case TypeUnused:
		return attrUnused
	case TypeNormal:
		return attrNormal
	case TypeControl:
		return attrControl
	case TypeUserDefined:
		return attrUserDefined
	case TypeByte:
		return attrByte
	}
	return attrUndefined
}

// detectSpecial finds EOT, EOM and FIM tokens by their text when the metadata
// does not name them, marks them as control tokens, and marks control tokens
// named "...unused..." as unused (llama.cpp's load, "auto-detect").
func (t *Tokenizer) detectSpecial() {
	detect := []struct {
		id    *int32
		texts []string
	}{
		{&t.eot, []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
			"<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}},
		{&t.eom, []string{"<|eom_id|>"}},
		{&t.fimPre, []string{"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
			"▁<PRE>", "<|code_prefix|>", "<|prefix|>"}},
		{&t.fimSuf, []string{"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
			"▁<SUF>", "<|code_suffix|>", "<|suffix|>"}},
		{&t.fimMid, []string{"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
			"▁<MID>", "<|code_middle|>", "<|middle|>"}},
		{&t.fimPad, []string{"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
		{&t.fimRep, []string{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
		{&t.fimSep, []string{"<|file_sep|>"}},
	}
	// llama.cpp walks a hash map, so which of several candidates wins is
	// unspecified there; here the lowest id wins.
	for _, d := range detect {
		if *d.id >= 0 {
			continue
		}
		for id, s := range t.tokens {
			if slices.Contains(d.texts, s) {
				*d.id = int32(id)
				t.attrs[id] |= attrControl
				break
			}
		}
	}
	for id, s := range t.tokens {
		if t.attrs[id]&attrControl != 0 && strings.Contains(s, "unused") {
			t.attrs[id] |= attrUnused
		}
	}
}

// eogTexts are the tokens llama.cpp treats as end of generation by text.
var eogTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
	"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
	"<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<｜end▁of▁sentence｜>", "[e~[",
}

func (t *Tokenizer) buildEOG() {
	t.eog = map[int32]bool{}
	for _, id := range []int32{t.fimPad, t.fimRep, t.fimSep} {
		if id >= 0 {
			t.eog[id] = true
		}
	}
	for id, s := range t.tokens {
		if slices.Contains(eogTexts, s) {
			t.eog[int32(id)] = true
			t.attrs[id] |= attrControl
		}
	}
	// gpt-oss: these always render.
	for id, s := range t.tokens {
		switch s {
		case "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>":
			t.attrs[id] = attrUserDefined
		}
	}
	for _, id := range []int32{t.eos, t.eot, t.eom} {
		if id >= 0 {
			t.eog[id] = true
		}
	}
	// o200k_harmony and solar-open: "<|end|>" is not the end there.
	var hasReturn, hasCall, hasFlush bool
	end := int32(-1)
	for id := range t.eog {
		switch t.tokens[id] {
		case "<|return|>":
			hasReturn = true
		case "<|call|>", "<|calls|>":
			hasCall = true
		case "<|flush|>":
			hasFlush = true
		case "<|end|>":
			end = id
		}
	}
	if end >= 0 && hasCall && (hasReturn || hasFlush) {
		delete(t.eog, end)
		t.attrs[end] = attrUserDefined
	}
	// gemma4 and paddleocr: "</s>" is not the end when "<|tool_response>" is.
	var hasToolResponse bool
	s := int32(-1)
	for id := range t.eog {
		switch t.tokens[id] {
		case "<|tool_response>":
			hasToolResponse = true
		case "</s>":
			s = id
		}
	}
	if hasToolResponse && s >= 0 {
		delete(t.eog, s)
		t.attrs[s] = attrNormal
	}
}

// modelAttrs applies llama.cpp's per-model token attributes, chosen by name.
func (t *Tokenizer) modelAttrs(v *Vocab) {
	name := strings.ToLower(v.Name)
	set := func(tok string, a attr, on bool) {
		if id, ok := t.ids[tok]; ok {
			if on {
				t.attrs[id] |= a
			} else {
				t.attrs[id] &^= a
			}
		}
	}
	containsAny := func(s string, subs ...string) bool {
		for _, sub := range subs {
			if strings.Contains(s, sub) {
				return true
			}
		}
		return false
	}
	switch {
	case containsAny(v.Pre, "jina-v2-de", "jina-v2-es", "jina-v2-code") || containsAny(v.Arch, "nomic-bert-moe", "jina-bert-v3"):
		set("<mask>", attrLStrip, true)
	case containsAny(name, "phi-3", "phi3"):
		for _, id := range t.special {
			t.attrs[id] |= attrRStrip
		}
		set("</s>", attrRStrip, true)
		for _, tok := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			set(tok, attrRStrip, false)
		}
	case containsAny(name, "modern-bert"):
		set("[MASK]", attrLStrip, true)
	}
}

// Encode tokenizes text as llama_tokenize(text, addSpecial, parseSpecial)
// does. With addSpecial the model's BOS/EOS (or BERT's CLS/SEP) are added as
// its metadata says; with parseSpecial the text of control tokens (such as
// "<|eot_id|>") becomes those tokens, otherwise it is tokenized as text. Text
// that is not valid UTF-8 is tokenized as llama.cpp does (never an error).
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) []int32 {
	frags := t.partition(text, parseSpecial)
	out := make([]int32, 0, len(text)/3+4)
	s := scratchPool.Get().(*scratch)
	defer putScratch(s)
	switch t.kind {
	case kindSPM:
		if addSpecial && t.addBOS {
			out = append(out, t.bos)
		}
		prevSpecial := true
		for _, f := range frags {
			if f.token >= 0 {
				out = append(out, f.token)
				prevSpecial = true
				continue
			}
			buf := s.word[:0]
			if t.addSpacePrefix && prevSpecial {
				buf = append(buf, "\u2581"...)
			}
			buf = appendEscaped(buf, f.text)
			s.word = buf
			out = t.encodeSPM(buf, out, s)
			prevSpecial = false
		}
		if addSpecial && t.addEOS {
			out = append(out, t.eos)
		}
	case kindBPE:
		if addSpecial && t.addBOS {
			out = append(out, t.bos)
		}
		for _, f := range frags {
			if f.token >= 0 {
				out = append(out, f.token)
				continue
			}
			out = t.encodeBPE(f.text, out, s)
		}
		if addSpecial && t.addEOS {
			out = append(out, t.eos)
		}
	case kindWPM:
		if addSpecial && t.bos >= 0 {
			out = append(out, t.bos)
		}
		for _, f := range frags {
			if f.token >= 0 {
				out = append(out, f.token)
				continue
			}
			out = t.encodeWPM(f.text, out)
		}
		if addSpecial && t.sep >= 0 {
			out = append(out, t.sep)
		}
	}
	return out
}

// appendEscaped appends s with every ' ' replaced by U+2581 (SPM's "▁").
func appendEscaped(dst []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, "\u2581"...)
		s = s[i+1:]
	}
}

// fragment is either a token (token >= 0) or raw text still to tokenize.
type fragment struct {
	token int32
	text  string
}

// partition splits text at the occurrences of special tokens, longest token
// first (llama.cpp's tokenizer_st_partition). User-defined tokens are always
// split out; control and unknown tokens only with parseSpecial.
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{token: -1, text: text}}
	var next []fragment
	for _, id := range t.special {
		a := t.attrs[id]
		if !parseSpecial && a&(attrControl|attrUnknown) != 0 {
			continue
		}
		tok := t.tokens[id]
		changed := false
		next = next[:0]
		for _, f := range frags {
			if f.token >= 0 || !strings.Contains(f.text, tok) {
				next = append(next, f)
				continue
			}
			changed = true
			rest := f.text
			for {
				i := strings.Index(rest, tok)
				if i < 0 {
					if rest != "" {
						next = append(next, fragment{token: -1, text: rest})
					}
					break
				}
				left := rest[:i]
				if a&attrLStrip != 0 {
					left = strings.TrimRight(left, cSpaces)
				}
				if left != "" {
					next = append(next, fragment{token: -1, text: left})
				}
				next = append(next, fragment{token: id})
				rest = rest[i+len(tok):]
				if a&attrRStrip != 0 {
					rest = strings.TrimLeft(rest, cSpaces)
				}
			}
		}
		if changed {
			frags, next = next, frags
		}
	}
	return frags
}

// cSpaces is what C's isspace accepts.
const cSpaces = " \t\n\v\f\r"

// BOS returns the beginning-of-sequence token, or -1.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS returns the end-of-sequence token, or -1.
func (t *Tokenizer) EOS() int32 { return t.eos }

// EOT returns the end-of-turn token, or -1.
func (t *Tokenizer) EOT() int32 { return t.eot }

// EOM returns the end-of-message token (Llama 3.1 tool calls), or -1.
func (t *Tokenizer) EOM() int32 { return t.eom }

// UNK returns the unknown token, or -1.
func (t *Tokenizer) UNK() int32 { return t.unk }

// PAD returns the padding token, or -1.
func (t *Tokenizer) PAD() int32 { return t.pad }

// AddBOS reports whether Encode with addSpecial puts BOS first.
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// AddEOS reports whether Encode with addSpecial appends EOS.
func (t *Tokenizer) AddEOS() bool { return t.addEOS }

// IsEOG reports whether id ends generation (EOS, EOT, EOM and the other
// end tokens llama.cpp recognises).
func (t *Tokenizer) IsEOG(id int32) bool { return t.eog[id] }

// EOG returns the end-of-generation tokens in increasing order.
func (t *Tokenizer) EOG() []int32 {
	ids := make([]int32, 0, len(t.eog))
	for id := range t.eog {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// IsControl reports whether id is a control token (BOS, EOS, chat markers).
func (t *Tokenizer) IsControl(id int32) bool {
	return t.valid(id) && t.attrs[id]&attrControl != 0
}

// NumTokens returns the vocabulary size.
func (t *Tokenizer) NumTokens() int { return len(t.tokens) }

// Token returns the raw vocabulary text of id ("" when out of range).
func (t *Tokenizer) Token(id int32) string {
	if !t.valid(id) {
		return ""
	}
	return t.tokens[id]
}

// TokenID returns the id of the vocabulary entry s.
func (t *Tokenizer) TokenID(s string) (int32, bool) {
	id, ok := t.ids[s]
	return id, ok
}

// Model returns tokenizer.ggml.model.
func (t *Tokenizer) Model() string { return t.model }

// Pre returns tokenizer.ggml.pre ("gemma4" for model gemma4, as llama.cpp
// sets it).
func (t *Tokenizer) Pre() string { return t.preName }

func (t *Tokenizer) valid(id int32) bool { return id >= 0 && int(id) < len(t.tokens) }
