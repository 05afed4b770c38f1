#!/usr/bin/env bash
# Regenerates testdata/synth: llama.cpp's outputs (shared/tools/golden.cpp)
# on synthetic files that `hearth gen` writes (seed 0), for shapes no
# shared model has: gemma4 with sliding and global layers of different KV
# widths (every released Gemma 4), tiny-gemma4. Needs the reference build
# (shared/tools/llama-cpp-ref.sh; REF below, build-noamx: AMX repacking
# changes llama.cpp's sums).
# usage: internal/golden/testdata/make_synth_golden.sh   (from the repository root)
set -euo pipefail
REF=${REF:-$HOME/.cache/hearth-ref/llama.cpp}
LIB=${LIB:-$REF/build-noamx/bin}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../../../.." && pwd)/shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/hearth" ./cmd/hearth
g++ -O2 -std=c++17 -I"$REF/include" -I"$REF/ggml/include" "$SHARED/tools/golden.cpp" -L"$LIB" -lllama -lggml -lggml-base -Wl,-rpath,"$LIB" -o "$tmp/golden"
# name: the golden folder (golden.Tolerance reads the family from it); shape; quant.
for spec in gemma4-tiny-synth-Q8_0:tiny-gemma4:q8_0; do
  IFS=: read -r name shape q <<<"$spec"
  "$tmp/hearth" gen --shape "$shape" --quant "$q" --seed 0 -o "$tmp/$name.gguf" >/dev/null
  out=internal/golden/testdata/synth/$name
  mkdir -p "$out"
  for p in "$SHARED"/golden/prompts/*.txt; do
    "$tmp/golden" "$tmp/$name.gguf" "$p" "$out/$(basename "$p" .txt).json" 32 2>/dev/null
  done
  echo "wrote $out"
done
