// bench/llamacpp_logits.js -- llama.cpp's next-token log-probabilities for a GGUF file through
// node-llama-cpp 3.21.1 (its prebuilt CPU library = llama.cpp v0.4.0), for tests/sh/gguf_llamacpp.sh.
//   node bench/llamacpp_logits.js NODE_MODULES_DIR MODEL.gguf 5,17,42 OUT.f32
// writes little-endian float32 [n_tokens, n_vocab]: ln softmax(logits) after every position
// (node-llama-cpp exposes probabilities, temperature 1, no truncation; NaN where p == 0),
// evaluated from an empty context, 2 threads, F32 KV cache.
const path = require("path");
const fs = require("fs");
const [, , nm, model, toks, out, vocab] = process.argv;
(async () => {
    const { getLlama } = await import(path.join(path.resolve(nm), "node-llama-cpp", "dist", "index.js"));
    const llama = await getLlama({ gpu: false, build: "never", logLevel: process.env.NLC_LOG || "error" });
    const m = await llama.loadModel({ modelPath: model, useMmap: true });
    const ids = toks.split(",").map(Number);
    const ctx = await m.createContext({ contextSize: 256, threads: 2, batchSize: 256, experimentalKvCacheKeyType: "F32",
                                        experimentalKvCacheValueType: "F32" });
    const seq = ctx.getSequence();
    const V = +vocab;
    const buf = Buffer.alloc(ids.length * V * 4);
    let i = 0;
    // one token at a time so that every position's logits are available
    for (const t of ids) {
        const res = await seq.controlledEvaluate([[t, { generateNext: { probabilities: true,
            options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } }]]);
        const pr = res[0]?.next?.probabilities;
        if (!pr) throw new Error("no probabilities from controlledEvaluate");
        for (let v = 0; v < V; v++) {
            const p = pr.get(v);
            buf.writeFloatLE(p > 0 ? Math.log(p) : NaN, (i * V + v) * 4);
        }
        i++;
    }
    fs.writeFileSync(out, buf);
    await ctx.dispose(); await m.dispose(); await llama.dispose();
})().catch((e) => { console.error("llamacpp_logits:", e.message); process.exit(1); });
