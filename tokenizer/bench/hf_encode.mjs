// Times one encode call of a whole file with the Hugging Face Rust tokenizer
// through its Node binding: after warm-up calls, the median of several.
//
//   node hf_encode.mjs TOKENIZER_JSON TEXT_FILE [RUNS]
//
// Prints one JSON line: {"tokenizer", "tokens", "runs_ms", "median_ms"}.
// Needs @anush008/tokenizers installed where Node finds it (NODE_PATH).
import { createRequire } from "module";
import { readFileSync } from "fs";

const require = createRequire((process.env.NODE_PATH || process.cwd() + "/node_modules") + "/");
const { Tokenizer } = require("@anush008/tokenizers");

const [tokPath, textPath, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 7);
const tk = Tokenizer.fromFile(tokPath);
const text = readFileSync(textPath, "utf8");
let tokens = 0;
for (let i = 0; i < 2; i++) tokens = (await tk.encode(text, null, { addSpecialTokens: false })).getIds().length;
const times = [];
for (let i = 0; i < runs; i++) {
  const t0 = process.hrtime.bigint();
  await tk.encode(text, null, { addSpecialTokens: false });
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
const sorted = [...times].sort((a, b) => a - b);
console.log(JSON.stringify({ tokenizer: tokPath, tokens, runs_ms: times.map((t) => +t.toFixed(1)), median_ms: +sorted[sorted.length >> 1].toFixed(1) }));
