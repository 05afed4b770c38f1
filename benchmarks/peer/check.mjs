// check.mjs FILE...: loads each GGUF file with llama.cpp (node-llama-cpp),
// evaluates a short prompt and checks the next-token distribution: finite
// and not flat. Prints one line per file; exits 1 if any fails.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {basename} from "node:path";

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
let failed = false;
for (const file of process.argv.slice(2)) {
    try {
        const model = await llama.loadModel({modelPath: file, gpuLayers: 0});
        const context = await model.createContext({contextSize: 64, batchSize: 64});
        const seq = context.getSequence();
        const prompt = model.tokenize("the quick brown fox", false);
        const input = [model.tokens.bos, ...prompt];
        const out = await seq.controlledEvaluate(input.map((t, i) =>
            i === input.length - 1 ? [t, {generateNext: {token: true, probabilities: true}}] : t));
        const probs = [...out[input.length - 1].next.probabilities.values()];
        const finite = probs.every(Number.isFinite);
        const top = probs.reduce((m, p) => Math.max(m, p), 0), n = probs.length;
        const ok = finite && n > 1 && top > 1.5 / n; // not uniform
        console.log(`${ok ? "ok  " : "FAIL"} ${basename(file)}: ${model.typeDescription}, ${n} tokens, ${prompt.length} prompt pieces, top p ${top.toFixed(5)} (uniform ${(1 / n).toFixed(5)})`);
        failed ||= !ok;
        await context.dispose();
        await model.dispose();
    } catch (err) {
        console.log(`FAIL ${basename(file)}: ${err.message}`);
        failed = true;
    }
}
process.exit(failed ? 1 : 0);
