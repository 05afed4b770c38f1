#!/usr/bin/env bash
# run.sh: the serving measurements of benchmarks/serve/RESULTS.md, with
# `hearth serve` on loopback and `hearth bench serve` as its client.
#
#   benchmarks/serve/run.sh [-r ROUNDS] [-m SHAPE:QUANT | -m FILE] [-t THREADS] [TEST...]
#
# TEST is one or more of (default all):
#   streams  aggregate output tokens/s at 8 concurrent streams vs 1 stream
#            (completions of 32 prompt tokens, 64 output tokens; the two
#            back to back in each round)
#   prefix   TTFT of a chat whose 1000-token system prompt repeats (the
#            first request fills the prefix cache) vs 1016-token prompts
#            that share nothing (each round with a new seed, so a new prefix)
#   burst    200 requests at once, 30% of clients hanging up, against a
#            64 MiB KV cache (128 blocks of 16 tokens); /metrics sampled
#            every 250 ms, then read again a second after
#
# The model defaults to llama-1b:q4_0 (`hearth gen` writes it into the
# cache on first use). `HEARTH=path` skips the build. The raw JSON reports
# go to $OUT (default a temporary folder), the summary to stdout. Load
# averages are printed before and after each run: the machine is shared.
set -euo pipefail

rounds=3 model=llama-1b:q4_0 threads=$(nproc) port=${PORT:-18434}
while getopts "r:m:t:h" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	m) model=$OPTARG ;;
	t) threads=$OPTARG ;;
	*) sed -n '2,22p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(streams prefix burst)

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
hearth=${HEARTH:-$out/hearth}
if [ -z "${HEARTH:-}" ]; then
	echo "building hearth" >&2
	(cd "$root" && go build -buildvcs=auto -o "$hearth" ./cmd/hearth)
fi

# bench runs `hearth bench serve ARGS`, or, until the bench command wires
# it, the same code through cmd/hearth's test binary.
if "$hearth" bench serve --help 2>&1 | grep -q -- --shared-prefix-tokens; then
	bench() { "$hearth" bench serve "$@"; }
else
	echo "hearth bench serve is not wired yet: using cmd/hearth's test binary" >&2
	(cd "$root" && go test -c -o "$out/hearth.test" ./cmd/hearth)
	bench() { HEARTH_BENCH_SERVE_ARGS="$*" "$out/hearth.test" -test.run '^TestBenchServeArgs$' | sed '/^PASS$/d'; }
fi

if [[ $model == *:* && ! -f $model ]]; then
	file=$("$hearth" gen --shape "${model%%:*}" --quant "${model#*:}")
else
	file=$model
fi
name=$(basename "$file" .gguf)
models=$(mktemp -d)
ln -s "$(realpath "$file")" "$models/$name.gguf"

server_pid=
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=
	fi
}
trap 'stop_server; rm -rf "$models"' EXIT

# start_server ARGS: hearth serve on loopback, waiting (at most 60 s) for
# /health.
start_server() {
	stop_server
	"$hearth" serve --models "$models" --host 127.0.0.1 --port "$port" -t "$threads" "$@" 2>>"$out/serve.log" &
	server_pid=$!
	for _ in $(seq 600); do
		curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0
		sleep 0.1
	done
	echo "hearth serve did not start (see $out/serve.log)" >&2
	exit 1
}

url=http://127.0.0.1:$port/v1
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
common=(--url "$url" -m "$name" --progress never -o json)
echo "# $name, $threads threads, $(nproc) CPUs, $rounds rounds, $(date -u +%F)"

has() { local t; for t in "${tests[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

if has streams; then
	start_server
	# Calibrate once (and load the model); every run then uses the ratio.
	bench "${common[@]}" --endpoint completions -n 1 --max-tokens 1 --warmup 1 >"$out/calibrate.json"
	tpw=$(jq .tokens_per_word "$out/calibrate.json")
	echo
	echo "## streams: completions, 32 prompt tokens, 64 output tokens ($tpw tokens/word)"
	echo
	echo "| round | load before | 1 stream tok/s | 8 streams tok/s | ratio | 1 stream ITL p50 ms | 8 streams ITL p50 ms | load after |"
	echo "|---|---|---|---|---|---|---|---|"
	for r in $(seq "$rounds"); do
		l0=$(loadavg)
		bench "${common[@]}" --endpoint completions --tokens-per-word "$tpw" --warmup 0 --seed "$r" \
			-c 1 -n 4 --prompt-tokens 32 --max-tokens 64 >"$out/streams-1-$r.json"
		bench "${common[@]}" --endpoint completions --tokens-per-word "$tpw" --warmup 0 --seed "$r" \
			-c 8 -n 16 --prompt-tokens 32 --max-tokens 64 >"$out/streams-8-$r.json"
		a=$(jq .output_tokens_per_s "$out/streams-1-$r.json")
		b=$(jq .output_tokens_per_s "$out/streams-8-$r.json")
		printf "| %d | %s | %.1f | %.1f | %.2f× | %.0f | %.0f | %s |\n" "$r" "$l0" "$a" "$b" \
			"$(jq -n "$b / $a")" "$(jq .itl.p50_ms "$out/streams-1-$r.json")" "$(jq .itl.p50_ms "$out/streams-8-$r.json")" "$(loadavg)"
	done
fi

if has prefix; then
	start_server
	bench "${common[@]}" -n 1 --max-tokens 1 --warmup 1 >"$out/calibrate-chat.json"
	tpw=$(jq .tokens_per_word "$out/calibrate-chat.json")
	echo
	echo "## prefix: chat, a 1000-token system prompt + 16 tokens, 8 output tokens, one at a time ($tpw tokens/word)"
	echo
	echo "| round | load before | shared: first TTFT ms | shared: TTFT p50 of the next 5 ms | unique 1016: TTFT p50 of 3 ms | unique ÷ shared p50 | first ÷ shared p50 | prompt tokens | load after |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for r in $(seq "$rounds"); do
		l0=$(loadavg)
		seed=$((100 + r))
		bench "${common[@]}" --tokens-per-word "$tpw" --warmup 0 --seed "$seed" --samples \
			-c 1 -n 6 --shared-prefix-tokens 1000 --prompt-tokens 16 --max-tokens 8 >"$out/prefix-shared-$r.json"
		bench "${common[@]}" --tokens-per-word "$tpw" --warmup 0 --seed "$seed" \
			-c 1 -n 3 --prompt-tokens 1016 --max-tokens 8 >"$out/prefix-unique-$r.json"
		first=$(jq '.first_ttft_ns / 1e6' "$out/prefix-shared-$r.json")
		# the p50 of the five requests after the first
		warm=$(jq '[.samples[1:][].ttft_ns / 1e6] | sort | .[2]' "$out/prefix-shared-$r.json")
		uniq=$(jq .ttft.p50_ms "$out/prefix-unique-$r.json")
		printf "| %d | %s | %.0f | %.0f | %.0f | %.1f× | %.1f× | %.0f / %.0f | %s |\n" "$r" "$l0" "$first" "$warm" "$uniq" \
			"$(jq -n "$uniq / $warm")" "$(jq -n "$first / $warm")" \
			"$(jq .mean_prompt_tokens "$out/prefix-shared-$r.json")" "$(jq .mean_prompt_tokens "$out/prefix-unique-$r.json")" "$(loadavg)"
	done
fi

if has burst; then
	start_server --kv-budget 64MiB
	bench "${common[@]}" --endpoint completions -n 1 --max-tokens 1 --warmup 1 >"$out/calibrate-burst.json"
	tpw=$(jq .tokens_per_word "$out/calibrate-burst.json")
	echo
	echo "## burst: 200 completions at once, 30% disconnecting, 24 prompt + 16 output tokens, --kv-budget 64MiB"
	echo
	echo "| round | load before | completed | disconnected | failed | time s | pool blocks | most used (/metrics) | used after run | used 1 s later | free 1 s later | in flight 1 s later | load after |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for r in $(seq "$rounds"); do
		l0=$(loadavg)
		bench "${common[@]}" --endpoint completions --tokens-per-word "$tpw" --warmup 0 --seed "$((200 + r))" \
			-c 200 -n 200 --prompt-tokens 24 --max-tokens 16 --disconnect 0.3 \
			--metrics auto --metrics-every 250ms >"$out/burst-$r.json" || true
		sleep 1
		curl -sf "http://127.0.0.1:$port/metrics" >"$out/burst-$r.metrics"
		m() { awk -v k="$1" '$1 == k { print $2 }' "$out/burst-$r.metrics"; }
		j="$out/burst-$r.json"
		printf "| %d | %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s |\n" "$r" "$l0" \
			"$(jq .completed "$j")" "$(jq .disconnected "$j")" "$(jq .failed "$j")" "$(jq '.duration_ns / 1e9' "$j")" \
			"$(jq '.gauges.hearth_kv_blocks_used.after + .gauges.hearth_kv_blocks_free.after' "$j")" \
			"$(jq .gauges.hearth_kv_blocks_used.max "$j")" "$(jq .gauges.hearth_kv_blocks_used.after "$j")" \
			"$(m hearth_kv_blocks_used)" "$(m hearth_kv_blocks_free)" "$(m hearth_requests_in_flight)" "$(loadavg)"
	done
fi
