#!/usr/bin/env bash
# gpu-check: the one-call device check of the CUDA backend (`make gpu-check`).
#
# Here (no GPU needed):   scripts/gpu-check.sh
#   builds hearth and the gpu-tagged test binary of runtime/cuda into .gpu/
#   (ignored through .git/info/exclude), copies the small shared models and
#   their golden outputs there, copies this script to .gpu/run.sh, and prints
#   the one device call to make.
# There (on the GPU):     bash .gpu/run.sh     (= scripts/gpu-check.sh --device)
#   runs, well under 10 minutes: the device tests (kernels vs the CPU backend
#   op by op, the tensor-core prefill matmul (mma.cu) and the f32 FMA tiles
#   both, whole forward passes vs the CPU and llama.cpp's golden logits with
#   each prefill kernel, Qwen 3.5's recurrent layers (recurrent.cu) and
#   routing on the device vs the CPU, LoRA adapters mixed in a batch
#   (lora.cu: op parity, a generation vs the CPU and as graphs), CUDA graph
#   replay, decode steps as CUDA graphs
#   (HEARTH_CUDA_GRAPH) bitwise against direct launches, NVML), a device
#   copy-bandwidth test, and the GPU benchmark of the llama-8b synthetic
#   shape generated there with `hearth gen` (pp512 with each prefill kernel,
#   tg128 and tg32 x8 with and without graphs), then `hearth bench` (CPU) on
#   the same file for comparison; prints one table last. Logs go to $OUT
#   when it is set.
#   What the table decides: "graph decode steps" all bitwise equal and no
#   failures → graphs can default on (runtime/cuda graph.go, Toggle
#   resolve(EnvGraphs, false) → true); "golden mma=true" and the mma rows of
#   "ops vs CPU" passing → tensor cores can default on (backend.go,
#   resolve(EnvMMA, false) → true); until then HEARTH_CUDA_MMA=1 enables them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Shared test data: $HEARTH_TESTDATA or ../shared beside the repository.
SHARED=${HEARTH_TESTDATA:-$(cd .. && pwd)/shared}
# Priority order; the last ones are dropped when the carry would pass BUDGET_MB.
MODELS=(stories260K-f32 stories260K-f16 stories260K-bf16 stories260K-q4_0 stories260K-q8_0 stories260K-q4_k_m
	tiny-llama-spm-Q4_0 tiny-llama-spm-Q4_K_M tiny-llama-spm-Q6_K tiny-llama-spm-Q8_0)
BUDGET_MB=${BUDGET_MB:-52} # the device call carries 64 MiB in all, the working tree included
SHAPE=${SHAPE:-llama-8b}   # the synthetic model benchmarked on the device (a dry run here: SHAPE=tiny)

prepare() {
	local G=.gpu
	rm -rf "$G"
	mkdir -p "$G/bin" "$G/shared/models" "$G/shared/golden"
	if [ -d .git ] && ! grep -qx '/.gpu/' .git/info/exclude 2>/dev/null; then
		mkdir -p .git/info && echo '/.gpu/' >>.git/info/exclude
	fi
	echo "gpu-check: building (CGO_ENABLED=1 for NVML telemetry)"
	CGO_ENABLED=1 go build -buildvcs=auto -trimpath -ldflags='-s -w' -o "$G/bin/hearth" ./cmd/hearth
	CGO_ENABLED=1 go test -c -tags gpu -trimpath -ldflags='-s -w' -o "$G/bin/cuda.test" ./runtime/cuda/ 2>&1 |
		grep -v -e 'deprecated' -e '^# github.com/NVIDIA' -e 'cgo-gcc-prolog' -e 'nvml.h' -e 'note: declared' -e '^ *[0-9]* |' -e '^ *|' -e 'In file included' || true
	gzip -9 "$G/bin/hearth" "$G/bin/cuda.test"
	cp scripts/gpu-check.sh "$G/run.sh"
	local size
	size() { du -sm "$G" | cut -f1; }
	for m in "${MODELS[@]}"; do
		local f="$SHARED/models/$m.gguf"
		if [ ! -f "$f" ]; then
			echo "gpu-check: $f missing, skipped"
			continue
		fi
		local add=$(($(du -sm "$f" | cut -f1) + $(du -sm "$SHARED/golden/$m" 2>/dev/null | cut -f1 || echo 0)))
		if [ $(($(size) + add)) -gt "$BUDGET_MB" ]; then
			echo "gpu-check: $m left out (carry would pass $BUDGET_MB MB)"
			continue
		fi
		cp "$f" "$G/shared/models/"
		[ -d "$SHARED/golden/$m" ] && cp -r "$SHARED/golden/$m" "$G/shared/golden/"
	done
	# The hybrid models of TestGPURecurrent (recurrent.cu: causal conv and
	# gated delta rule, σ gates) with their golden prompts, then the
	# mixtures of TestGPUMoERouting (routing on the device; qwen35moe is
	# both), budget allowing.
	for m in qwen35-h1001-Q8_0 qwen35moe-h1001-Q8_0; do
		local f="$SHARED/arch-next/models/$m.gguf" gd="$SHARED/arch-next/golden/$m"
		[ -f "$f" ] && [ -d "$gd" ] || continue
		if [ $(($(size) + $(du -sm "$f" | cut -f1) + $(du -sm "$gd" | cut -f1))) -gt "$BUDGET_MB" ]; then
			echo "gpu-check: $m left out (carry would pass $BUDGET_MB MB)"
			continue
		fi
		mkdir -p "$G/shared/arch-next/models" "$G/shared/arch-next/golden"
		cp "$f" "$G/shared/arch-next/models/"
		cp -r "$gd" "$G/shared/arch-next/golden/"
	done
	for m in arch/models/qwen3moe-h1001-Q8_0 arch/models/gpt-oss-h1001-MXFP4_MOE arch-next/models/gemma4-moe-h1001-Q8_0 arch/models/llama-moe-h1001-Q8_0; do
		local f="$SHARED/$m.gguf"
		[ -f "$f" ] || continue
		if [ $(($(size) + $(du -sm "$f" | cut -f1))) -gt "$BUDGET_MB" ]; then
			echo "gpu-check: $m left out (carry would pass $BUDGET_MB MB)"
			continue
		fi
		mkdir -p "$G/shared/$(dirname "$m")"
		cp "$f" "$G/shared/$m.gguf"
	done
	echo "gpu-check: .gpu holds $(size) MB:"
	ls "$G/shared/models" | sed 's/^/  /'
	cat <<EOF

Device call (one run, about 5 minutes of device time; nothing else needed):
  run(command="bash .gpu/run.sh", carry=[".gpu"], timeout_s=540)
EOF
}

device() {
	set +e +o pipefail # every step runs; the exit codes are collected below
	local G=.gpu OUT=${OUT:-/tmp/gpu-check-out}
	mkdir -p "$OUT" /tmp/gpu-check
	local T0=$SECONDS
	echo "== machine"
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader || true
	nproc
	for b in hearth cuda.test; do gunzip -c "$G/bin/$b.gz" >/tmp/gpu-check/$b && chmod +x /tmp/gpu-check/$b; done
	local H=/tmp/gpu-check/hearth
	# The synthetic 8B model (4.3 GB of Q4_0) is generated in RAM while the
	# parity tests run.
	local MD=/dev/shm
	[ -d $MD ] || MD=/tmp
	local MODEL=$MD/$SHAPE-q4_0.gguf
	(cd /tmp && $H gen --shape "$SHAPE" --quant q4_0 -o $MODEL --progress=never >"$OUT/gen.log" 2>&1) &
	local GEN=$!

	echo "== device tests (runtime/cuda, -tags gpu)"
	local rc=0
	HEARTH_TESTDATA=$PWD/$G/shared HEARTH_SYNTH_GOLDEN=$PWD/internal/golden/testdata/synth /tmp/gpu-check/cuda.test -test.run '^TestGPU' -test.skip 'TestGPUBench' -test.v -test.timeout 5m \
		>"$OUT/gpu-tests.log" 2>&1 || rc=$?
	grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|\s+gpu_test.go|\s+parity_test.go|panic|FAIL|ok )' "$OUT/gpu-tests.log" | grep -v '=== RUN' | tail -80
	sed -n '/^== runtime\/cuda device checks ==/,$p' "$OUT/gpu-tests.log" >"$OUT/summary-tests.txt"

	echo "== generating $SHAPE q4_0 ($((SECONDS - T0)) s so far)"
	local grc=0
	wait $GEN || grc=$?
	cat "$OUT/gen.log"
	local benchrc=0 cpurc=0
	if [ $grc -eq 0 ]; then
		echo "== GPU bench"
		HEARTH_BENCH_MODEL=$MODEL /tmp/gpu-check/cuda.test -test.run '^TestGPUBench$' -test.v -test.timeout 4m \
			>"$OUT/gpu-bench.log" 2>&1 || benchrc=$?
		grep -E '^(--- |\s+gpu_test.go|panic)' "$OUT/gpu-bench.log" | tail -20 || true
		sed -n '/^== runtime\/cuda device checks ==/,$p' "$OUT/gpu-bench.log" | grep -v '^RESULT' >"$OUT/summary-bench.txt"
		echo "== CPU: hearth bench on the same file ($((SECONDS - T0)) s so far)"
		timeout 100 $H bench -m $MODEL -p 64 -n 16 -r 1 --progress=never >"$OUT/cpu-bench.md" 2>&1 || cpurc=$?
	fi
	rm -f $MODEL

	echo
	echo "================ gpu-check summary ($((SECONDS - T0)) s) ================"
	cat "$OUT/summary-tests.txt" 2>/dev/null | grep -v '^RESULT'
	[ -s "$OUT/summary-bench.txt" ] && grep -v '^== ' "$OUT/summary-bench.txt"
	echo "-- hearth bench (CPU, $(nproc) threads), same model:"
	cat "$OUT/cpu-bench.md" 2>/dev/null || echo "(not run)"
	echo "device tests: $([ $rc -eq 0 ] && echo PASS || echo "FAIL (exit $rc)")   gen: exit $grc   GPU bench: $([ $benchrc -eq 0 ] && echo PASS || echo "FAIL (exit $benchrc)")   CPU bench: exit $cpurc"
	echo "logs: $OUT/gpu-tests.log $OUT/gpu-bench.log $OUT/gen.log $OUT/cpu-bench.md"
	[ $rc -eq 0 ] && [ $grc -eq 0 ] && [ $benchrc -eq 0 ]
}

case "${1:-}" in
--device) device ;;
"")
	# As .gpu/run.sh (the copy the device call runs) it is the device side.
	if [ "$(basename "$(dirname "$0")")" = ".gpu" ]; then
		device
	else
		prepare
	fi
	;;
*)
	echo "usage: $0 [--device]" >&2
	exit 2
	;;
esac
