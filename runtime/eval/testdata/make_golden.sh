#!/bin/sh
# make_golden.sh: llama-perplexity's figures for runtime/eval's tests.
#
# Run from this folder with LLAMA_BIN set to a llama.cpp build's bin folder
# (default: the reference build of /work/shared/tools/llama-cpp-ref.sh, the
# build without AMX, which segfaults on quantized models with it). Each
# output file starts with the command line that made it, then llama-
# perplexity's stdout (the figures), then the lines of its log (stderr) that
# give the chunk count and the final estimate.
#
# Models: $HEARTH_TESTDATA/models (default ../../../../shared/models).
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
B=${LLAMA_BIN:-$HOME/.cache/hearth-ref/llama.cpp/build-noamx/bin}
M=${HEARTH_TESTDATA:-../../../../shared}/models
run() {
	out=$1
	shift
	echo "# llama-perplexity $*" | sed -e "s|$M/||g" -e "s|$tmp/||g" >"$out"
	"$B/llama-perplexity" "$@" -t 2 >>"$out" 2>"$tmp/log"
	grep -E "calculating perplexity over|computing over|Final estimate" "$tmp/log" |
		sed 's/^[0-9.]* [IWE] //' >>"$out"
}
# Perplexity, -c 128, every chunk of stories.txt.
run ppl-stories260K-f32.txt -m "$M/stories260K-f32.gguf" -f stories.txt -c 128
run ppl-tiny-llama-spm-Q8_0.txt -m "$M/tiny-llama-spm-Q8_0.gguf" -f stories.txt -c 128
# KL-divergence: the base's log-probabilities, then the quantized model against them.
run base-stories260K-f32.txt -m "$M/stories260K-f32.gguf" -f stories.txt -c 128 --kl-divergence-base "$tmp/s.kld"
run kld-stories260K-q4_0.txt -m "$M/stories260K-q4_0.gguf" -c 128 --kl-divergence-base "$tmp/s.kld" --kl-divergence
run base-tiny-llama-spm-Q8_0.txt -m "$M/tiny-llama-spm-Q8_0.gguf" -f stories.txt -c 128 --kl-divergence-base "$tmp/t.kld"
run kld-tiny-llama-spm-Q2_K.txt -m "$M/tiny-llama-spm-Q2_K.gguf" -c 128 --kl-divergence-base "$tmp/t.kld" --kl-divergence
# A small base file written by llama-perplexity (3 chunks of 64 tokens,
# 97 KB), which Hearth must read, and the q4_0 model's figures against it.
run base-stories260K-f32-c64.txt -m "$M/stories260K-f32.gguf" -f stories.txt -c 64 --chunks 3 --kl-divergence-base stories260K-f32-c64.kld
run kld-stories260K-q4_0-c64.txt -m "$M/stories260K-q4_0.gguf" -c 64 --kl-divergence-base stories260K-f32-c64.kld --kl-divergence
