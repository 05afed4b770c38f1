#!/usr/bin/env bash
# compare.sh: hearth bench against llama.cpp (node-llama-cpp, pinned in
# peer/package.json) on the same GGUF files, same thread count, same tests,
# run back to back and alternating, and the ratio per test.
#
#   benchmarks/compare.sh [-r ROUNDS] [-t THREADS] [-p 512] [-n 128] MODEL...
#
# MODEL is a GGUF file or SHAPE:QUANT (llama-1b:q4_0), a synthetic model
# that `hearth gen` writes into the cache first. Each round runs, for every
# model, `hearth bench -r 1` and then `node peer/bench.mjs -r 1` (each with
# its own untimed warm-up), so slow drifts of the machine hit both alike;
# before each run it waits for the machine to be idle (other sessions'
# jobs), and the table gives the median over rounds, its range, and
# hearth ÷ llama.cpp of the medians.
# The markdown goes to stdout, the raw JSON lines to $OUT (default a
# temporary folder), progress to stderr.
set -euo pipefail

rounds=3 threads=$(nproc) prompt=512 gen=128
while getopts "r:t:p:n:h" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	t) threads=$OPTARG ;;
	p) prompt=$OPTARG ;;
	n) gen=$OPTARG ;;
	*) sed -n '2,15p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n '2,15p' "$0" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

if [ ! -d "$here/peer/node_modules/node-llama-cpp" ]; then
	echo "installing node-llama-cpp into $here/peer" >&2
	(cd "$here/peer" && npm ci --no-audit --no-fund >&2)
fi
hearth=${HEARTH:-$out/hearth}
if [ -z "${HEARTH:-}" ]; then
	echo "building hearth" >&2
	(cd "$root" && go build -buildvcs=auto -o "$hearth" ./cmd/hearth)
fi

files=()
for m in "$@"; do
	if [[ $m == *:* && ! -f $m ]]; then
		files+=("$("$hearth" gen --shape "${m%%:*}" --quant "${m#*:}")")
	else
		files+=("$m")
	fi
done

loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }
# busy prints the percentage of CPU time the whole machine spent busy over
# the next two seconds (other processes: nothing of ours runs then).
busy() {
	local a b c d e f g h t1 i1
	read -r _ a b c d e f g h _ </proc/stat
	t1=$((a + b + c + d + e + f + g + h)) i1=$((d + e))
	sleep 2
	read -r _ a b c d e f g h _ </proc/stat
	echo $((100 * ((a + b + c + d + e + f + g + h - t1) - (d + e - i1)) / (a + b + c + d + e + f + g + h - t1 + 1)))
}
# quiet waits (up to IDLE_WAIT seconds, default 300) until the machine is
# less than IDLE_BUSY percent busy (default 15), so that a run does not
# share the cores with someone else's job, and logs what it saw.
quiet() {
	local waited=0 b
	while b=$(busy) && [ "$b" -gt "${IDLE_BUSY:-15}" ] && [ $waited -lt "${IDLE_WAIT:-300}" ]; do
		waited=$((waited + 2))
	done
	echo "$1: ${b}% busy before the run, waited ${waited}s" >>"$out/load.txt"
}
echo "load average before: $(loadavg)" >"$out/load.txt"
for ((round = 1; round <= rounds; round++)); do
	for f in "${files[@]}"; do
		quiet "round $round hearth $(basename "$f")"
		echo "round $round/$rounds: hearth bench $(basename "$f")" >&2
		"$hearth" bench -m "$f" -t "$threads" -p "$prompt" -n "$gen" -r 1 -o jsonl --progress never \
			--seed "$round" >>"$out/hearth.jsonl"
		quiet "round $round llama.cpp $(basename "$f")"
		echo "round $round/$rounds: llama.cpp $(basename "$f")" >&2
		node "$here/peer/bench.mjs" -m "$f" -t "$threads" -p "$prompt" -n "$gen" -r 1 --seed "$round" |
			node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const r of JSON.parse(s))console.log(JSON.stringify(r))})' \
				>>"$out/peer.jsonl"
	done
done
echo "load average after: $(loadavg)" >>"$out/load.txt"
node "$here/summarize.mjs" "$out/hearth.jsonl" "$out/peer.jsonl" "$out/load.txt" "$rounds"
echo "raw results: $out" >&2
