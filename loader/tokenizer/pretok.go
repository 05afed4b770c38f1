package tokenizer

import (
	"fmt"
	"strings"

	"github.com/dlclark/regexp2"
)

// Pre-tokenizer regexes, as llama.cpp's llm_tokenizer_bpe lists them per
// tokenizer.ggml.pre value. Each list is applied in order: every regex splits
// each piece left by the previous one into its matches and the gaps between
// them (gaps are kept as pieces).
const (
	exprGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`

	// Llama 3's regex as llama.cpp adapts it (the original uses (?i:...) for
	// the contractions).
	exprLlama3     = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	exprLlama3Orig = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

	exprQwen2  = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	exprQwen35 = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

	exprTekken = `[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	exprGPT4o  = `[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`

	exprSeedCoder  = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+`
	exprBailingMoE = `'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`

	// DeepSeek LLM's letter class: Latin, Greek, Cyrillic, Armenian, Georgian,
	// Cherokee and other cased scripts (written with escapes: several of its
	// code points change under Unicode normalization).
	exprDeepSeekLLMLetters = "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+"
	exprDeepSeekPunct      = "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+"
	exprCJKHangul          = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
	exprCJKKana            = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+"
	exprDeepSeekV3         = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
	exprBloom              = " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+"

	// exprLines splits only at newlines (Gemma 4: SentencePiece-style BPE
	// merges over whole lines).
	exprLines = `[^\n]+|[\n]+`
)

// preConfig is what a tokenizer.ggml.pre value selects in llama.cpp.
type preConfig struct {
	exprs        []string
	ignoreMerges bool // a word that is itself a token skips the merges (llama3)
	keepSpaces   bool // clean_spaces=false: detokenize leaves " ." etc. alone
	addBOS       bool // the default of add_bos_token
	noBOS        bool // no default BOS token
	addSEP       bool // the default of add_sep_token

	// SentencePiece-style BPE (llama.cpp's byte_encode=false and
	// escape_whitespaces): spaces become U+2581 before the split, words are
	// merged as UTF-8 rather than in GPT-2's byte alphabet, pieces turn
	// U+2581 back into spaces, and a piece that is not a token is spelled as
	// <0xXX> byte tokens.
	spmStyle bool
	// newlineWords: a word made only of newlines that is a token is taken
	// whole (llama.cpp's PR 21343, pre type GEMMA4).
	newlineWords bool
	// forceBOS: add_bos_token is true whatever the metadata says (llama.cpp's
	// PR 21500, pre type GEMMA4).
	forceBOS bool
}

var (
	preDefault   = preConfig{exprs: []string{`[\p{P}\$\+<=>\^~\|]+`, exprGPT2, `\p{N}+`, `[0-9][0-9][0-9]`}}
	preLlama3    = preConfig{exprs: []string{exprLlama3}, ignoreMerges: true, addBOS: true}
	preGPT2      = preConfig{exprs: []string{exprGPT2}}
	preStarcoder = preConfig{exprs: []string{`\p{N}`, exprGPT2}}
	preQwen2     = preConfig{exprs: []string{exprQwen2}, keepSpaces: true}
	preDeepSeek3 = preConfig{exprs: []string{`\p{N}{1,3}`, exprCJKKana, exprDeepSeekV3}, keepSpaces: true}
	preBloom     = preConfig{exprs: []string{exprBloom}}
	preGPT4o     = preConfig{exprs: []string{exprGPT4o}, keepSpaces: true}
	preGemma4    = preConfig{exprs: []string{exprLines}, spmStyle: true, newlineWords: true, forceBOS: true, addBOS: true}
)

// preConfigs maps tokenizer.ggml.pre to its configuration. The names and
// groups follow llama.cpp's llama_vocab::impl::load; an empty name means
// "default", as there.
var preConfigs = map[string]preConfig{
	"":        preDefault,
	"default": preDefault,

	"llama3": preLlama3, "llama-v3": preLlama3, "llama-bpe": preLlama3, "falcon3": preLlama3,
	"falcon-h1": preLlama3, "pixtral": preLlama3, "midm-2.0": preLlama3, "lfm2": preLlama3,
	"jina-v5-nano": preLlama3,
	"dbrx":         {exprs: []string{exprLlama3}},
	"smaug-bpe":    {exprs: []string{exprLlama3}},
	"glm4":         {exprs: []string{exprLlama3}, noBOS: true},
	"chatglm-bpe":  {exprs: []string{exprLlama3}, noBOS: true},

	"deepseek-llm":   {exprs: []string{"[\r\n]", exprDeepSeekLLMLetters, exprDeepSeekPunct, `\s+$`, exprCJKHangul, `\p{N}+`}, keepSpaces: true},
	"deepseek-coder": {exprs: []string{"[\r\n]", `\s?\p{L}+`, `\s?\p{P}+`, exprCJKHangul, `\p{N}`}, keepSpaces: true},
	"deepseek-v3":    preDeepSeek3, "hunyuan-dense": preDeepSeek3, "joyai-llm": preDeepSeek3, "hy_v4": preDeepSeek3,

	"falcon": {exprs: []string{"[\\p{P}\\$\\+<=>\\^~\\|`]+", exprGPT2, `[0-9][0-9][0-9]`}},

	"gpt-2": preGPT2, "phi-2": preGPT2, "jina-es": preGPT2, "jina-de": preGPT2, "gigachat": preGPT2,
	"jina-v2-es": preGPT2, "jina-v2-de": preGPT2, "a.x-4.0": preGPT2, "mellum": preGPT2,
	"modern-bert": preGPT2, "mpt": preGPT2, "olmo": preGPT2, "jais": preGPT2, "exaone4": preGPT2,
	"trillion":        {exprs: []string{exprGPT2}, keepSpaces: true},
	"granite-docling": {exprs: []string{exprGPT2}, keepSpaces: true},
	"jina-v1-en":      {exprs: []string{exprGPT2}, addSEP: true},
	"jina-v2-code":    {exprs: []string{exprGPT2}, addSEP: true},
	"roberta-bpe":     {exprs: []string{exprGPT2}, addSEP: true},

	"starcoder": preStarcoder, "refact": preStarcoder, "codeshell": preStarcoder,
	"exaone": preStarcoder, "minerva-7b": preStarcoder, "mellum2": preStarcoder,
	"command-r": {exprs: []string{`\p{N}`, exprGPT2}, keepSpaces: true},
	"smollm":    {exprs: []string{`\p{N}`, exprGPT2}, keepSpaces: true},

	"qwen2": preQwen2, "deepseek-r1-qwen": preQwen2, "kormo": preQwen2, "f2llmv2": preQwen2,
	"hunyuan": preQwen2, "solar-open": preQwen2,
	"megrez":    {exprs: []string{exprQwen2}},
	"stablelm2": {exprs: []string{exprQwen2}},
	"qwen35":    {exprs: []string{exprQwen35}, keepSpaces: true},

	"poro-chat":    {exprs: []string{exprBloom}, keepSpaces: true},
	"bloom":        preBloom,
	"gpt3-finnish": preBloom,

	"tekken": {exprs: []string{exprTekken}, keepSpaces: true, ignoreMerges: true, addBOS: true},
	"gpt-4o": preGPT4o, "llama4": preGPT4o, "kanana2": preGPT4o, "talkie": preGPT4o, "minimax-m2": preGPT4o,

	"seed-coder":  {exprs: []string{exprSeedCoder}, keepSpaces: true},
	"bailingmoe":  {exprs: []string{exprBailingMoE}, keepSpaces: true},
	"bailingmoe2": {exprs: []string{exprBailingMoE}, keepSpaces: true},
	"llada-moe":   {exprs: []string{exprBailingMoE}, keepSpaces: true},
	"grok-2":      {exprs: []string{exprQwen2}, keepSpaces: true},

	// Model "gemma4" always takes this one, whatever tokenizer.ggml.pre says.
	"gemma4": preGemma4, "granite-embed-multi-311m": preGemma4,
	"sarvam-moe": {exprs: []string{exprLines}, spmStyle: true, keepSpaces: true},
}

// splitKind says how one regex of a pre-tokenizer is run.
type splitKind uint8

const (
	splitRegex     splitKind = iota // regexp2 on the code points
	splitCollapsed                  // regexp2 on the category-collapsed code points
	splitGPT2                       // hand-written exprGPT2
	splitLlama3                     // hand-written exprLlama3
	splitLines                      // hand-written exprLines
)

type splitStep struct {
	kind splitKind
	re   *regexp2.Regexp
}

// preTokenizer splits text into words before BPE, as llama.cpp's
// unicode_regex_split does. It is immutable and safe for concurrent use.
type preTokenizer struct {
	steps []splitStep
}

// newPreTokenizer compiles exprs. With custom false the hand-written
// splitters are not used (tests compare the two).
func newPreTokenizer(exprs []string, custom bool) (*preTokenizer, error) {
	p := &preTokenizer{}
	for _, e := range exprs {
		var st splitStep
		switch {
		case custom && e == exprGPT2:
			st.kind = splitGPT2
		case custom && (e == exprLlama3 || e == exprLlama3Orig):
			st.kind = splitLlama3
		case custom && e == exprLines:
			st.kind = splitLines
		default:
			pat, collapsed, err := translateRegex(e)
			if err != nil {
				return nil, err
			}
			re, err := regexp2.Compile(pat, regexp2.None)
			if err != nil {
				return nil, fmt.Errorf("tokenizer: pre-tokenizer regex %q: %w", e, err)
			}
			st.re = re
			st.kind = splitRegex
			if collapsed {
				st.kind = splitCollapsed
			}
		}
		p.steps = append(p.steps, st)
	}
	return p, nil
}

// Category code points of llama.cpp's collapsed text: a non-ASCII code point
// is replaced by one of these before a regex with \p{..} runs on it.
const (
	collapsedOther  = 0xD0
	collapsedNumber = 0xD1
	collapsedLetter = 0xD2
	collapsedPunct  = 0xD3
	collapsedAccent = 0xD4
	collapsedSymbol = 0xD5
	collapsedSpace  = 0x0B // non-ASCII whitespace becomes a vertical tab
)

// collapsedClass is what a \p{X} becomes in the collapsed regex: the
// category's marker plus the ASCII members of the category.
var collapsedClass = map[string]string{
	`\p{N}`:  `\u00D10-9`,
	`\p{L}`:  `\u00D2A-Za-z`,
	`\p{P}`:  `\u00D3!-#%-*,-/:-;?-@\[-\]_\{\}`,
	`\p{M}`:  `\u00D4`,
	`\p{S}`:  `\u00D5\$\+<->\^` + "`" + `\|`,
	`\p{Lu}`: `\u00D2A-Za-z`,
	`\p{Ll}`: `\u00D2A-Za-z`,
	`\p{Lt}`: `\u00D2A-Za-z`,
	`\p{Lm}`: `\u00D2A-Za-z`,
	`\p{Lo}`: `\u00D2A-Za-z`,
}

// translateRegex turns a llama.cpp pre-tokenizer regex (ECMAScript, as
// std::regex runs it) into a regexp2 pattern. A regex that names a Unicode
// category runs on the collapsed text, with each \p{X} replaced as llama.cpp
// does; others run on the code points with non-ASCII whitespace turned into
// \v. "$" becomes \z: ECMAScript's $ does not match before a final newline.
func translateRegex(e string) (pat string, collapsed bool, err error) {
	for k := range collapsedClass {
		if strings.Contains(e, k) {
			collapsed = true
			break
		}
	}
	var b strings.Builder
	inside := false
	for i := 0; i < len(e); i++ {
		c := e[i]
		if collapsed && c >= 0x80 {
			return "", false, fmt.Errorf("tokenizer: regex %q mixes Unicode categories and non-ASCII characters", e)
		}
		escaped := i > 0 && e[i-1] == '\\'
		switch {
		case c == '[' && !escaped && !inside:
			inside = true
			b.WriteByte(c)
			continue
		case c == ']' && !escaped && inside:
			inside = false
			b.WriteByte(c)
			continue
		case c == '\\' && i+1 < len(e) && e[i+1] != 'p':
			// copy the escape pair unchanged
			b.WriteByte(c)
			b.WriteByte(e[i+1])
			i++
			continue
		case c == '$' && !inside:
			b.WriteString(`\z`)
			continue
		}
		if collapsed && c == '\\' && i+3 < len(e) && e[i+1] == 'p' && e[i+2] == '{' {
			if end := strings.IndexByte(e[i+3:], '}'); end >= 0 {
				cat := e[i : i+3+end+1]
				if cls, ok := collapsedClass[cat]; ok {
					if !inside {
						b.WriteByte('[')
					}
					b.WriteString(cls)
					if !inside {
						b.WriteByte(']')
					}
					i += 3 + end
					continue
				}
			}
		}
		b.WriteByte(c)
	}
	return b.String(), collapsed, nil
}

// collapse maps code points as llama.cpp's collapsed text does.
func collapse(cpts []rune, dst []rune) []rune {
	for _, c := range cpts {
		if c < 0x80 {
			dst = append(dst, c)
			continue
		}
		f := flagsOf(c)
		switch {
		case f.isWhitespace():
			dst = append(dst, collapsedSpace)
		case f&fCategories == fNumber:
			dst = append(dst, collapsedNumber)
		case f&fCategories == fLetter:
			dst = append(dst, collapsedLetter)
		case f&fCategories == fPunctuation:
			dst = append(dst, collapsedPunct)
		case f&fCategories == fAccentMark:
			dst = append(dst, collapsedAccent)
		case f&fCategories == fSymbol:
			dst = append(dst, collapsedSymbol)
		default:
			dst = append(dst, collapsedOther)
		}
	}
	return dst
}

// wide maps non-ASCII whitespace to \v, as llama.cpp does before std::wregex.
func wide(cpts []rune, dst []rune) []rune {
	for _, c := range cpts {
		if c > 0x7F && flagsOf(c).isWhitespace() {
			c = collapsedSpace
		}
		dst = append(dst, c)
	}
	return dst
}

// split returns the lengths, in code points, of the words of cpts.
func (p *preTokenizer) split(cpts []rune) []int {
	offs := []int{len(cpts)}
	if len(cpts) == 0 {
		return nil
	}
	var collapsedText, wideText []rune
	for _, st := range p.steps {
		switch st.kind {
		case splitGPT2:
			offs = splitGPT2Custom(cpts, offs)
		case splitLlama3:
			offs = splitLlama3Custom(cpts, offs)
		case splitLines:
			offs = splitLinesCustom(cpts, offs)
		case splitCollapsed:
			if collapsedText == nil {
				collapsedText = collapse(cpts, make([]rune, 0, len(cpts)))
			}
			offs = splitRegexp(st.re, collapsedText, offs)
		default:
			if wideText == nil {
				wideText = wide(cpts, make([]rune, 0, len(cpts)))
			}
			offs = splitRegexp(st.re, wideText, offs)
		}
	}
	return offs
}

// splitRegexp splits each piece of text into the regex's matches and the gaps
// between them, like std::regex_iterator over the piece.
func splitRegexp(re *regexp2.Regexp, text []rune, offs []int) []int {
	out := make([]int, 0, len(offs))
	start := 0
	for _, n := range offs {
		piece := text[start : start+n]
		prev := 0
		m, err := re.FindRunesMatch(piece)
		for err == nil && m != nil {
			if m.Index > prev {
				out = append(out, m.Index-prev)
			}
			if m.Length > 0 {
				out = append(out, m.Length)
			}
			prev = m.Index + m.Length
			m, err = re.FindNextMatch(m)
		}
		if prev < n {
			out = append(out, n-prev)
		}
		start += n
	}
	return out
}

// cursor gives the hand-written splitters llama.cpp's view of one piece:
// code points and flags inside [ini, end), and sentinels outside.
type cursor struct {
	cpts     []rune
	ini, end int
	prevEnd  int
	out      []int
}

const outOfRange = -1

func (c *cursor) cpt(pos int) rune {
	if pos >= c.ini && pos < c.end {
		return c.cpts[pos]
	}
	return outOfRange
}

func (c *cursor) flags(pos int) cptFlags {
	if pos >= c.ini && pos < c.end {
		return flagsOf(c.cpts[pos])
	}
	return 0
}

// add ends the current word at end and returns its length.
func (c *cursor) add(end int) int {
	n := end - c.prevEnd
	if n > 0 {
		c.out = append(c.out, n)
	}
	c.prevEnd = end
	return n
}

func isNonWordChar(f cptFlags) bool {
	return f&(fWhitespace|fLetter|fNumber) == 0 && f != 0
}

// splitGPT2Custom is exprGPT2 written out by hand, following llama.cpp's
// unicode_regex_split_custom_gpt2 (whose result is the reference).
func splitGPT2Custom(cpts []rune, offs []int) []int {
	c := &cursor{cpts: cpts, out: make([]int, 0, len(offs)+len(cpts)/4)}
	start := 0
	for _, n := range offs {
		c.ini, c.end, c.prevEnd = start, start+n, start
		start += n
		for pos := c.ini; pos < c.end; {
			cp := c.cpt(pos)
			f := c.flags(pos)

			// 's|'t|'re|'ve|'m|'ll|'d
			if cp == '\'' && pos+1 < c.end {
				next := c.cpt(pos + 1)
				if next == 's' || next == 't' || next == 'm' || next == 'd' {
					pos += c.add(pos + 2)
					continue
				}
				if pos+2 < c.end {
					nn := c.cpt(pos + 2)
					if (next == 'r' && nn == 'e') || (next == 'v' && nn == 'e') || (next == 'l' && nn == 'l') {
						pos += c.add(pos + 3)
						continue
					}
				}
			}

			f2 := f
			if cp == ' ' {
				f2 = c.flags(pos + 1)
			}
			// ' ?\p{L}+'
			if f2.isLetter() {
				if cp == ' ' {
					pos++
				}
				for f2.isLetter() {
					pos++
					f2 = c.flags(pos)
				}
				c.add(pos)
				continue
			}
			// ' ?\p{N}+'
			if f2.isNumber() {
				if cp == ' ' {
					pos++
				}
				for f2.isNumber() {
					pos++
					f2 = c.flags(pos)
				}
				c.add(pos)
				continue
			}
			// ' ?[^\s\p{L}\p{N}]+'
			if isNonWordChar(f2) {
				if cp == ' ' {
					pos++
				}
				for isNonWordChar(f2) {
					pos++
					f2 = c.flags(pos)
				}
				c.add(pos)
				continue
			}

			nws := 0
			for c.flags(pos + nws).isWhitespace() {
				nws++
			}
			// '\s+(?!\S)'
			if nws > 1 && c.cpt(pos+nws) != outOfRange {
				pos += nws - 1
				c.add(pos)
				continue
			}
			// '\s+'
			if nws > 0 {
				pos += nws
				c.add(pos)
				continue
			}
			// no match
			pos++
			c.add(pos)
		}
	}
	return c.out
}

// splitLlama3Custom is exprLlama3 written out by hand, following llama.cpp's
// unicode_regex_split_custom_llama3.
func splitLlama3Custom(cpts []rune, offs []int) []int {
	c := &cursor{cpts: cpts, out: make([]int, 0, len(offs)+len(cpts)/4)}
	start := 0
	for _, n := range offs {
		c.ini, c.end, c.prevEnd = start, start+n, start
		start += n
		for pos := c.ini; pos < c.end; {
			cp := c.cpt(pos)
			f := c.flags(pos)

			// (?i:'s|'t|'re|'ve|'m|'ll|'d)
			if cp == '\'' && pos+1 < c.end {
				next := simpleLower(c.cpt(pos + 1))
				if next == 's' || next == 't' || next == 'm' || next == 'd' {
					pos += c.add(pos + 2)
					continue
				}
				if pos+2 < c.end {
					nn := simpleLower(c.cpt(pos + 2))
					if (next == 'r' && nn == 'e') || (next == 'v' && nn == 'e') || (next == 'l' && nn == 'l') {
						pos += c.add(pos + 3)
						continue
					}
				}
			}

			// [^\r\n\p{L}\p{N}]?\p{L}+
			if !(cp == '\r' || cp == '\n' || f.isNumber()) {
				if f.isLetter() || c.flags(pos+1).isLetter() {
					pos++
					for c.flags(pos).isLetter() {
						pos++
					}
					c.add(pos)
					continue
				}
			}

			// \p{N}{1,3}
			if f.isNumber() {
				ini := pos
				for c.flags(pos).isNumber() {
					pos++
					if pos-ini >= 3 {
						c.add(pos)
						ini = pos
					}
				}
				c.add(pos)
				continue
			}

			// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
			f2 := f
			if cp == ' ' {
				f2 = c.flags(pos + 1)
			}
			if f2&(fWhitespace|fLetter|fNumber) == 0 && f != 0 {
				if cp == ' ' {
					pos++
				}
				for isNonWordChar(f2) {
					pos++
					f2 = c.flags(pos)
				}
				for cp2 := c.cpt(pos); cp2 == '\r' || cp2 == '\n'; cp2 = c.cpt(pos) {
					pos++
				}
				c.add(pos)
				continue
			}

			nws := 0
			lastRN := 0
			for c.flags(pos + nws).isWhitespace() {
				if cp2 := c.cpt(pos + nws); cp2 == '\r' || cp2 == '\n' {
					lastRN = pos + nws + 1
				}
				nws++
			}
			// \s*[\r\n]+
			if lastRN > 0 {
				pos = lastRN
				c.add(pos)
				continue
			}
			// \s+(?!\S)
			if nws > 1 && c.cpt(pos+nws) != outOfRange {
				pos += nws - 1
				c.add(pos)
				continue
			}
			// \s+
			if nws > 0 {
				pos += nws
				c.add(pos)
				continue
			}
			// no match
			pos++
			c.add(pos)
		}
	}
	return c.out
}

// splitLinesCustom is exprLines written out by hand: each piece splits into
// its runs of newlines and runs of anything else.
func splitLinesCustom(cpts []rune, offs []int) []int {
	out := make([]int, 0, len(offs))
	start := 0
	for _, n := range offs {
		end := start + n
		for i := start; i < end; {
			j := i + 1
			for j < end && (cpts[j] == '\n') == (cpts[i] == '\n') {
				j++
			}
			out = append(out, j-i)
			i = j
		}
		start = end
	}
	return out
}
