// summarize.mjs HEARTH.jsonl PEER.jsonl LOAD.txt ROUNDS: the markdown
// table of compare.sh, one row per model and test, hearth ÷ llama.cpp.
import {readFileSync} from "node:fs";
import {basename} from "node:path";
import {createRequire} from "node:module";

const [hearthFile, peerFile, loadFile, rounds] = process.argv.slice(2);
const lines = (f) => readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const hearth = lines(hearthFile), peer = lines(peerFile);
const testName = (r) => r.test ?? (r.n_prompt > 0 ? `pp${r.n_prompt}` : `tg${r.n_gen}`);
const key = (r) => `${basename(r.model_filename)}\t${testName(r)}\t${r.n_threads}`;
const group = (rs) => {
    const m = new Map();
    for (const r of rs) {
        if (!m.has(key(r))) m.set(key(r), []);
        m.get(key(r)).push(r);
    }
    return m;
};
const median = (x) => {
    const s = [...x].sort((a, b) => a - b), m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
// "median (min–max)": interference only ever slows a run down, so the
// median of a few alternating rounds resists it better than the mean, and
// the best round of each side estimates its speed on an idle machine.
const cell = (x) => x.length ? `${median(x).toFixed(2)} (${Math.min(...x).toFixed(1)}–${Math.max(...x).toFixed(1)})` : "—";
const h = group(hearth), p = group(peer);

const sys = hearth[0] ?? {};
const bw = median(hearth.filter((r) => r.read_gbs).map((r) => r.read_gbs));
const require = createRequire(import.meta.url);
const peerVersion = require("./peer/node_modules/node-llama-cpp/package.json").version;
console.log(`Machine: ${sys.cpu_info}, ${sys.cores} cores, SIMD ${sys.simd}; memory read bandwidth ${bw ? bw.toFixed(1) + " GB/s (median)" : "not measured"}`);
console.log(`Peer: llama.cpp ${peer[0]?.build_commit ?? "?"} through node-llama-cpp ${peerVersion} (prebuilt CPU build); hearth ${sys.build_commit}`);
console.log(`Method: ${rounds} alternating rounds of hearth bench -r 1 and peer/bench.mjs -r 1 (each after its own warm-up), each run started on an idle machine; t/s = median over rounds (min–max); ratios of the medians and of the best rounds`);
const load = readFileSync(loadFile, "utf8").trim().split("\n");
const waits = load.filter((l) => l.includes("busy before"));
const busiest = Math.max(0, ...waits.map((l) => Number(l.match(/: (\d+)% busy/)?.[1] ?? 0)));
const waited = waits.reduce((s, l) => s + Number(l.match(/waited (\d+)s/)?.[1] ?? 0), 0);
console.log(`Machine load: ${load.filter((l) => l.startsWith("load average")).join("; ")}; busiest start of a run ${busiest}% busy; ${waited}s spent waiting for idle`);
console.log();
console.log("| model | size | threads | test | hearth t/s | llama.cpp t/s | hearth ÷ llama.cpp (medians) | (bests) | hearth tg ÷ roofline |");
console.log("| ----- | ---: | ------: | ---: | ---------: | ------------: | ---------------------------: | ------: | -------------------: |");
for (const [k, hs] of h) {
    const ps = p.get(k) ?? [];
    const [file, test, threads] = k.split("\t");
    const ht = hs.map((r) => r.avg_ts), pt = ps.map((r) => r.avg_ts);
    const ratio = pt.length ? (median(ht) / median(pt)).toFixed(2) : "—";
    const best = pt.length ? (Math.max(...ht) / Math.max(...pt)).toFixed(2) : "—";
    // The roofline of each round's own bandwidth measurement, median.
    const roofs = hs.filter((r) => r.roofline_pct).map((r) => r.roofline_pct);
    const roof = roofs.length ? `${median(roofs).toFixed(0)}% of ${median(hs.map((r) => r.roofline_ts)).toFixed(1)} t/s` : "";
    const size = `${(hs[0].model_size / 2 ** 20).toFixed(0)} MiB`;
    console.log(`| ${hs[0].model_type} (${file}) | ${size} | ${threads} | ${test} | ${cell(ht)} | ${cell(pt)} | ${ratio} | ${best} | ${roof} |`);
}
const bws = hearth.filter((r) => r.read_gbs).map((r) => r.read_gbs);
if (bws.length) console.log(`\nMemory read bandwidth (hearth bench, 1 GiB, all threads, per round): ${bws.map((b) => b.toFixed(1)).join(", ")} GB/s`);
