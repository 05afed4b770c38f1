// Package all registers every architecture Hearth runs: import it for its
// side effect where models are loaded.
package all

import (
	_ "github.com/hearth-llm/hearth/runtime/arch/bert"   // bert, nomic-bert
	_ "github.com/hearth-llm/hearth/runtime/arch/gemma"  // gemma2, gemma3
	_ "github.com/hearth-llm/hearth/runtime/arch/gemma4" // gemma4
	_ "github.com/hearth-llm/hearth/runtime/arch/gptoss" // gpt-oss
	_ "github.com/hearth-llm/hearth/runtime/arch/llama"  // llama, mistral3
	_ "github.com/hearth-llm/hearth/runtime/arch/phi3"   // phi3
	_ "github.com/hearth-llm/hearth/runtime/arch/qwen"   // qwen2, qwen3, qwen3moe
	_ "github.com/hearth-llm/hearth/runtime/arch/qwen35" // qwen35, qwen35moe
)
