#!/usr/bin/env bash
# Regenerates testdata/golden: llama.cpp's run of stories260K-f32 with the
# golden adapter (golden_test.go's goldenAdapter, written by Go), through
# shared/tools/golden.cpp (its LORA environment variable loads the
# adapter with llama_adapter_lora_init, scale 1). Needs the reference
# build: shared/tools/llama-cpp-ref.sh (REF below; build-noamx here).
# usage: runtime/lora/testdata/make_golden.sh   (from the repository root)
set -euo pipefail
REF=${REF:-$HOME/.cache/hearth-ref/llama.cpp}
LIB=${LIB:-$REF/build-noamx/bin}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../../../.." && pwd)/shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
HEARTH_LORA_OUT=$tmp/adapter.gguf go test ./runtime/lora -run TestWriteGoldenAdapter -count=1 >/dev/null
g++ -O2 -std=c++17 -I"$REF/include" -I"$REF/ggml/include" "$SHARED/tools/golden.cpp" -L"$LIB" -lllama -lggml -lggml-base -Wl,-rpath,"$LIB" -o "$tmp/golden"
out=runtime/lora/testdata/golden/stories260K-f32
mkdir -p "$out"
for p in once-upon-a-time hello; do
  LORA=$tmp/adapter.gguf "$tmp/golden" "$SHARED/models/stories260K-f32.gguf" "$SHARED/golden/prompts/$p.txt" "$out/$p.json" 32 2>/dev/null
done
echo "wrote $out"
