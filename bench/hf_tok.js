// hf_tok.js -- Hugging Face `tokenizers` (npm; the Rust library behind transformers' fast tokenizers)
// as the reference for tests/sh/tokenizer_hf.sh and bench/tokenizer_bench.sh.
//
//   node hf_tok.js encode TOKENIZER.json FILE [--special]   one JSON array of ids for the whole file
//   node hf_tok.js bench TOKENIZER.json REPEATS FILE...     "name bytes first_s best_s" per file, 1 thread
//   node hf_tok.js split FILE train|validation OUT          SPLITS.md byte split
//
// Finds the package through NODE_PATH (e.g. NODE_PATH=/tmp/hf-tok/node_modules).
'use strict';
const fs = require('fs');
const path = require('path');

function splitOffset(buf) {
  let s = Math.floor(buf.length * 9 / 10);
  while (s < buf.length && (buf[s] & 0xc0) === 0x80) s++;
  return s;
}

async function main() {
  const [cmd, ...a] = process.argv.slice(2);
  if (cmd === 'split') {
    const b = fs.readFileSync(a[0]);
    const s = splitOffset(b);
    fs.writeFileSync(a[2], a[1] === 'train' ? b.subarray(0, s) : b.subarray(s));
    return;
  }
  const { Tokenizer } = require('tokenizers');
  const tok = Tokenizer.fromFile(a[0]);
  if (cmd === 'encode') {
    const text = fs.readFileSync(a[1]).toString('utf8');
    const e = await tok.encode(text, null, { addSpecialTokens: a[2] === '--special' });
    process.stdout.write(JSON.stringify(Array.from(e.getIds())) + '\n');
  } else if (cmd === 'bench') {
    const reps = parseInt(a[1], 10);
    for (const f of a.slice(2)) {
      const text = fs.readFileSync(f).toString('utf8');
      const bytes = Buffer.byteLength(text);
      let first = 0, best = Infinity, n = 0;
      for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint();
        const e = await tok.encode(text, null, { addSpecialTokens: false });
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        n = e.getIds().length;
        if (r === 0) first = dt;
        if (dt < best) best = dt;
      }
      console.log(`${path.basename(f)} ${bytes} ${n} ${first.toFixed(5)} ${best.toFixed(5)}`);
    }
  } else {
    console.error('usage: hf_tok.js encode|bench|split ...');
    process.exit(2);
  }
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
