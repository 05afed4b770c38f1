// bench.mjs measures llama.cpp (through node-llama-cpp, pinned in
// package.json) on a GGUF file the way llama-bench and `hearth bench` do,
// and prints llama-bench's JSON (an array of results).
//
//   node bench.mjs -m FILE [-t THREADS] [-p 512] [-n 128] [-r 5] [-b 512] [--parallel P] [-o json|md]
//
// ppN: N prompt tokens of random ids (the first BOS when the model adds
// one) evaluated on an empty sequence in batches of -b tokens, the logits
// of the last token computed, nothing else read back.
// tgN: N single-token evaluations from an empty sequence (BOS, then random
// ids), each computing its logits (node-llama-cpp's greedy pick of the next
// token reads them; it costs microseconds).
// --parallel P > 1 runs the tg test on P sequences of one context at once
// (node-llama-cpp batches their pending evaluations into one decode, as
// llama-batched-bench does); t/s counts the tokens of all P, as `hearth
// bench --parallel` does, and the test is named tgN xP.
// Each test runs once as a warm-up (a pp test in full, a tg test for one
// token), then -r timed runs; t/s is the mean ± sample standard deviation
// of the per-run rates, as llama-bench's avg_ts and stddev_ts.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {parseArgs} from "node:util";
import {cpus} from "node:os";
import {basename} from "node:path";

const {values: a} = parseArgs({options: {
    model: {type: "string", short: "m"},
    threads: {type: "string", short: "t", default: String(cpus().length)},
    "n-prompt": {type: "string", short: "p", default: "512"},
    "n-gen": {type: "string", short: "n", default: "128"},
    repetitions: {type: "string", short: "r", default: "5"},
    "batch-size": {type: "string", short: "b", default: "512"},
    output: {type: "string", short: "o", default: "json"},
    seed: {type: "string", default: "1"},
    parallel: {type: "string", default: "1"},
}});
if (!a.model) {
    console.error("usage: node bench.mjs -m FILE [-t THREADS] [-p 512] [-n 128] [-r 5] [-b 512] [-o json|md]");
    process.exit(2);
}
const threads = Number(a.threads), reps = Number(a.repetitions), batch = Number(a["batch-size"]);
const nPrompt = Number(a["n-prompt"]), nGen = Number(a["n-gen"]), par = Math.max(1, Number(a.parallel));

// A small seeded generator (mulberry32), so runs draw the same tokens.
let seed = Number(a.seed) >>> 0;
function random() {
    seed = (seed + 0x6D2B79F5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ t >>> 15, t | 1);
    t ^= t + Math.imul(t ^ t >>> 7, t | 61);
    return ((t ^ t >>> 14) >>> 0) / 4294967296;
}

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: threads});
const model = await llama.loadModel({modelPath: a.model, gpuLayers: 0, useMmap: true});
const md = model.fileInfo.metadata;
const nVocab = md.tokenizer?.ggml?.tokens?.length ?? md[md.general.architecture]?.vocab_size;
const addBOS = md.tokenizer?.ggml?.add_bos_token ?? (md.tokenizer?.ggml?.model === "llama");
const bos = addBOS ? model.tokens.bos : null;
const token = () => Math.floor(random() * nVocab);
let nParams = 0;
for (const t of model.fileInfo.tensorInfo) nParams += t.dimensions.reduce((p, d) => p * Number(d), 1);

const mean = (x) => x.reduce((s, v) => s + v, 0) / x.length;
const stdev = (x) => {
    if (x.length < 2) return 0;
    const m = mean(x);
    return Math.sqrt(x.reduce((s, v) => s + (v - m) * (v - m), 0) / (x.length - 1));
};

async function prompt(seq, n) {
    for (let done = 0; done < n;) {
        const k = Math.min(n - done, batch);
        const ids = [];
        for (let i = 0; i < k; i++)
            ids.push(done === 0 && i === 0 && bos != null ? bos : token());
        const input = ids.map((id, i) => i === k - 1 ? [id, {generateNext: {token: true}}] : id);
        await seq.controlledEvaluate(input);
        done += k;
    }
}

async function generate(seq, n) {
    let tok = bos ?? token();
    for (let i = 0; i < n; i++) {
        await seq.controlledEvaluate([[tok, {generateNext: {token: true}}]]);
        tok = token();
    }
}

const results = [];
for (const [p, n] of [[nPrompt, 0], [0, nGen]]) {
    if (p + n === 0) continue;
    // llama-bench's context: n_prompt + n_gen positions, one sequence.
    // P sequences for the tg test (one for pp), each with n positions.
    const P = p > 0 ? 1 : par;
    const context = await model.createContext({contextSize: P * Math.max(p + n, 32), batchSize: Math.max(P, Math.min(batch, p || 1)),
        threads: {ideal: threads, min: threads}, sequences: P, flashAttention: false});
    const seqs = Array.from({length: P}, () => context.getSequence());
    const seq = seqs[0];
    if (p > 0) await prompt(seq, p); else await Promise.all(seqs.map((s) => generate(s, 1))); // warm-up
    const samplesNs = [];
    for (let r = 0; r < reps; r++) {
        for (const s of seqs) await s.clearHistory();
        const t0 = process.hrtime.bigint();
        if (p > 0) await prompt(seq, p);
        if (n > 0) await Promise.all(seqs.map((s) => generate(s, n)));
        samplesNs.push(Number(process.hrtime.bigint() - t0));
    }
    const samplesTs = samplesNs.map((ns) => P * (p + n) / (ns / 1e9));
    results.push({
        build_commit: llama.llamaCppRelease.release, cpu_info: cpus()[0]?.model ?? "", backends: "CPU",
        model_filename: a.model, model_type: model.typeDescription, model_size: model.size, model_n_params: nParams,
        n_batch: batch, n_ubatch: batch, n_threads: context.currentThreads || threads, type_k: "f16", type_v: "f16",
        n_prompt: p, n_gen: n, n_depth: 0, flash_attn: false, test_time: new Date().toISOString(),
        avg_ns: Math.round(mean(samplesNs)), stddev_ns: Math.round(stdev(samplesNs)),
        avg_ts: mean(samplesTs), stddev_ts: stdev(samplesTs), samples_ns: samplesNs, samples_ts: samplesTs,
        test: p > 0 ? `pp${p}` : P > 1 ? `tg${n} x${P}` : `tg${n}`, n_parallel: P, engine: `node-llama-cpp ${llama.llamaCppRelease.release} (${llama.buildType})`,
    });
    await context.dispose();
}
await model.dispose();
await llama.dispose();

if (a.output === "md") {
    console.log(`| model | size | params | backend | threads | test | t/s |`);
    console.log(`| ----- | ---: | -----: | ------- | ------: | ---: | --: |`);
    for (const r of results)
        console.log(`| ${r.model_type} | ${(r.model_size / 2 ** 20).toFixed(2)} MiB | ${(r.model_n_params / 1e9).toFixed(2)} B | CPU | ${r.n_threads} | ${r.test} | ${r.avg_ts.toFixed(2)} ± ${r.stddev_ts.toFixed(2)} |`);
    console.log(`\n${basename(a.model)}; llama.cpp through ${results[0]?.engine}`);
} else {
    console.log(JSON.stringify(results, null, 2));
}
