package tokenizer

import "github.com/hearth-llm/hearth/loader/gguf"

// FromGGUF builds the tokenizer described by f's tokenizer.* metadata.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v, err := VocabFromGGUF(f)
	if err != nil {
		return nil, err
	}
	return New(v)
}
