// Generates cases.json: small tokenizer.json documents exercising rules the
// fixtures do not show, with the ids, tokens and decodes of the Hugging Face
// tokenizers library (through its Node binding) as the expected values.
//
//   cd /tmp/hfbench && npm install @anush008/tokenizers
//   NODE_PATH=/tmp/hfbench/node_modules node testdata/tokenizers/rules/gen.mjs
import { createRequire } from "module";
import { writeFileSync } from "fs";
const require = createRequire(process.env.NODE_PATH + "/");
const { Tokenizer } = require("@anush008/tokenizers");

// model builds a BPE model: byte tokens, single characters, then merges.
function model(chars, merges, opts = {}) {
  const vocab = {};
  let n = 0;
  const add = (t) => { if (!(t in vocab)) vocab[t] = n++; };
  if (opts.byte_fallback) for (let b = 0; b < 256; b++) add("<0x" + b.toString(16).toUpperCase().padStart(2, "0") + ">");
  if (opts.unk_token) add(opts.unk_token);
  for (const c of chars) add(c);
  for (const t of opts.extra || []) add(t);
  const plen = (opts.continuing_subword_prefix || "").length;
  for (const [a, b] of merges) { add(a); add(b); add(a + b.slice(plen)); }
  return {
    type: "BPE", dropout: null, unk_token: opts.unk_token ?? null,
    continuing_subword_prefix: opts.continuing_subword_prefix ?? null,
    end_of_word_suffix: opts.end_of_word_suffix ?? null,
    fuse_unk: opts.fuse_unk ?? false, byte_fallback: opts.byte_fallback ?? false,
    ignore_merges: opts.ignore_merges ?? false, vocab, merges: opts.legacy ? merges.map(([a, b]) => a + " " + b) : merges,
  };
}

function doc(m, parts = {}) {
  // Added tokens take the ids after the model vocabulary, as the library
  // assigns them; the post-processors name them by content.
  const ids = {};
  let next = Object.keys(m.vocab).length;
  for (const t of parts.added_tokens || []) { t.id = t.content in m.vocab ? m.vocab[t.content] : next++; ids[t.content] = t.id; }
  const pp = parts.post_processor;
  if (pp && pp.special_tokens) for (const k in pp.special_tokens) pp.special_tokens[k].ids = pp.special_tokens[k].tokens.map((t) => ids[t]);
  if (pp && pp.sep) { pp.sep[1] = ids[pp.sep[0]]; pp.cls[1] = ids[pp.cls[0]]; }
  return {
    version: "1.0", truncation: null, padding: null, added_tokens: parts.added_tokens || [],
    normalizer: parts.normalizer ?? null, pre_tokenizer: parts.pre_tokenizer ?? null,
    post_processor: parts.post_processor ?? null, decoder: parts.decoder ?? null, model: m,
  };
}

const ascii = [];
for (let c = 32; c < 127; c++) ascii.push(String.fromCharCode(c));
const sp = ["▁", ...ascii.filter((c) => c !== " ")];
const common = [["a", "b"], ["ab", "c"], ["-", "-"], ["a", "-"], ["-", "b"], ["b", "-"], ["-", "c"], ["1", "2"], ["12", "3"],
  ["▁", "a"], ["▁a", "b"], ["▁", "▁"], ["h", "i"], ["▁", "hi"], [" ", "a"], [" a", "b"], ["a", " "], ["!", "!"], [".", "a"]];
const base = (opts = {}) => model(opts.chars || ascii, opts.merges || common, opts);
const split = (pattern, behavior, invert = false) => ({ type: "Split", pattern, behavior, invert });
const meta = (prepend_scheme, s = true) => ({ type: "Metaspace", replacement: "▁", prepend_scheme, split: s });
const metaDec = (prepend_scheme) => ({ type: "Metaspace", replacement: "▁", prepend_scheme, split: true });
const at = (id, content, o = {}) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false, ...o });

const texts = ["ab-b--c abc", "  abc  hi  ", "a-b 123 1234 ab!!.a", "hi", "", "é ab"];
const cases = [];
const add = (name, d, t = texts) => cases.push({ name, tokenizer: d, texts: t });

for (const beh of ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]) {
  for (const inv of [false, true]) {
    add(`split-string-${beh}-${inv}`, doc(base(), { pre_tokenizer: split({ String: "-" }, beh, inv) }));
    add(`split-regex-${beh}-${inv}`, doc(base(), { pre_tokenizer: split({ Regex: "[0-9]+|-+" }, beh, inv) }));
  }
}
add("whitespace", doc(base(), { pre_tokenizer: { type: "Whitespace" } }));
add("whitespace-split", doc(base(), { pre_tokenizer: { type: "WhitespaceSplit" } }));
add("digits-individual", doc(base(), { pre_tokenizer: { type: "Digits", individual_digits: true } }));
add("digits-contiguous", doc(base(), { pre_tokenizer: { type: "Digits", individual_digits: false } }));
add("punctuation", doc(base(), { pre_tokenizer: { type: "Punctuation", behavior: "Isolated" } }));
add("punctuation-contiguous", doc(base(), { pre_tokenizer: { type: "Punctuation", behavior: "Contiguous" } }));
add("bert-pre", doc(base(), { pre_tokenizer: { type: "BertPreTokenizer" } }));
for (const s of ["always", "first", "never"]) {
  for (const sp_ of [true, false]) {
    add(`metaspace-${s}-${sp_}`, doc(base({ chars: sp, byte_fallback: true }), {
      pre_tokenizer: meta(s, sp_), decoder: metaDec(s),
      added_tokens: [at(300, "<x>", { special: true })],
    }), [...texts, "<x> ab", "ab<x>ab", "▁ab ▁▁ab"]);
  }
}
add("strip-lowercase", doc(base(), { normalizer: { type: "Sequence", normalizers: [{ type: "Strip", strip_left: true, strip_right: true }, { type: "Lowercase" }] } }),
  [...texts, "  AB-C  ", "İAB"]);
add("strip-left-only", doc(base(), { normalizer: { type: "Strip", strip_left: true, strip_right: false } }), ["  ab  ", "\u3000ab\u00a0"]);
add("nfkc", doc(base({ byte_fallback: true }), { normalizer: { type: "NFKC" }, decoder: { type: "Sequence", decoders: [{ type: "ByteFallback" }, { type: "Fuse" }] } }),
  ["ﬁ ① ｱ ab", "cafe\u0301", "Å"]);
add("nfd", doc(base({ byte_fallback: true }), { normalizer: { type: "NFD" }, decoder: { type: "ByteFallback" } }), ["café", "é ab"]);
add("replace-regex", doc(base(), { normalizer: { type: "Replace", pattern: { Regex: "\\s+" }, content: " " } }), ["a \t\n b", "ab"]);
add("prepend-replace", doc(base({ chars: sp, byte_fallback: true }), {
  normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
  decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
}));
add("wordpiece-prefix", doc(model(["a", "b", "c", "h", "i"], [["a", "##b"], ["##b", "##c"], ["h", "##i"], ["ab", "##c"]],
  { continuing_subword_prefix: "##", unk_token: "[UNK]", extra: ["##a", "##b", "##c", "##h", "##i"] }),
  { pre_tokenizer: { type: "Whitespace" }, decoder: { type: "WordPiece", prefix: "##", cleanup: true } }),
  ["abc ab cab hi", "axb xx hix", "a , b ."]);
add("end-of-word-suffix", doc(model(["a", "b", "c", "a</w>", "b</w>", "c</w>"], [["a", "b</w>"], ["a", "b"], ["ab", "c</w>"]],
  { end_of_word_suffix: "</w>", unk_token: "<unk>" }), { pre_tokenizer: { type: "WhitespaceSplit" }, decoder: { type: "BPEDecoder", suffix: "</w>" } }),
  ["ab abc abab cab", "xab ax"]);
add("ignore-merges", doc(model(ascii, [["a", "b"], ["b", "c"]], { ignore_merges: true, extra: ["abc", "xyz"] }), { pre_tokenizer: { type: "WhitespaceSplit" } }),
  ["abc xyz abcabc ab"]);
add("no-ignore-merges", doc(model(ascii, [["a", "b"], ["b", "c"]], { ignore_merges: false, extra: ["abc", "xyz"] }), { pre_tokenizer: { type: "WhitespaceSplit" } }),
  ["abc xyz abcabc ab"]);
add("fuse-unk", doc(model(["a", "b"], [["a", "b"]], { unk_token: "<unk>", fuse_unk: true }), {}), ["axyzb", "xyab", "ab", "éé"]);
add("no-fuse-unk", doc(model(["a", "b"], [["a", "b"]], { unk_token: "<unk>", fuse_unk: false }), {}), ["axyzb", "xyab", "ab", "éé"]);
add("no-unk", doc(model(["a", "b"], [["a", "b"]], { legacy: true }), {}), ["axyzb", "xyab"]);
add("bytelevel-regex", doc(model([...Array(256).keys()].map((b) => ""), [], {}), {}), []);
cases.pop();
{
  // Byte-level: the 256 byte characters.
  const chars = [];
  for (let b = 0; b < 256; b++) {
    const ok = (b >= 33 && b <= 126) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars.push(b);
  }
  const bs = [];
  let n = 0;
  const map = {};
  for (let b = 0; b < 256; b++) {
    if ((b >= 33 && b <= 126) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) map[b] = String.fromCharCode(b);
    else map[b] = String.fromCharCode(256 + n++);
  }
  for (let b = 0; b < 256; b++) bs.push(map[b]);
  const G = "Ġ";
  const merges = [[G, "a"], [G + "a", "b"], ["a", "b"], [G, G], ["'", "s"], ["1", "2"], ["h", "i"]];
  const bl = (aps, re) => ({ type: "ByteLevel", add_prefix_space: aps, trim_offsets: true, use_regex: re });
  const t2 = ["ab  ab   hi's 123 é\n\n x", " ab", "hi! ab\t\tab  ", "I'M it's", "\u00a0ab \u3000 ab"];
  for (const aps of [false, true]) for (const re of [false, true]) {
    add(`bytelevel-${aps}-${re}`, doc(model(bs, merges), { pre_tokenizer: bl(aps, re), decoder: bl(aps, re), post_processor: bl(aps, re) }), t2);
  }
  const llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  add("llama3-split", doc(model(bs, merges, { ignore_merges: true, extra: ["abab"] }), {
    pre_tokenizer: { type: "Sequence", pretokenizers: [split({ Regex: llama3 }, "Isolated"), bl(false, false)] }, decoder: bl(true, true),
  }), [...t2, "12345 abab I'M 'S 'ſ x\r\n\r\n  y"]);
  add("custom-lookahead", doc(model(bs, merges), {
    pre_tokenizer: { type: "Sequence", pretokenizers: [split({ Regex: "\\p{L}+|\\p{N}{1,2}|[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" }, "Isolated"), bl(false, false)] }, decoder: bl(true, true),
  }), t2);
}
add("added-tokens", doc(base({ chars: sp, byte_fallback: true }), {
  normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
  decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
  post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
    pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { "<s>": { id: "<s>", ids: [300], tokens: ["<s>"] }, "</s>": { id: "</s>", ids: [301], tokens: ["</s>"] } } },
  added_tokens: [at(300, "<s>", { special: true }), at(301, "</s>", { special: true }), at(302, "<ls>", { lstrip: true }), at(303, "<rs>", { rstrip: true }),
    at(304, "hi", { single_word: true }), at(305, "<s>x", { special: true }), at(306, "b c", { normalized: true })],
}), ["a <ls> b <rs> c", "hi hix xhi hi", "<s>x<s></s>", "ab c", "ab  c <s>", "  <ls><rs>  "]);
add("roberta-post", doc(base(), { pre_tokenizer: { type: "Whitespace" }, added_tokens: [at(300, "<cls>", { special: true }), at(301, "<sep>", { special: true })],
  post_processor: { type: "RobertaProcessing", sep: ["<sep>", 301], cls: ["<cls>", 300], trim_offsets: true, add_prefix_space: false } }), ["ab c"]);

const out = [];
for (const c of cases) {
  const json = JSON.stringify(c.tokenizer);
  let tk;
  try { tk = Tokenizer.fromString(json); } catch (e) { console.error("skip", c.name, String(e)); continue; }
  const want = [];
  for (const text of c.texts) {
    const e = await tk.encode(text, null, { addSpecialTokens: true });
    const ns = await tk.encode(text, null, { addSpecialTokens: false });
    const ids = e.getIds();
    want.push({ text, ids, tokens: e.getTokens(), ids_no_special: ns.getIds(),
      decoded: await tk.decode(ns.getIds(), false), decoded_skip_special: await tk.decode(ids, true) });
  }
  out.push({ name: c.name, tokenizer: c.tokenizer, cases: want });
}
writeFileSync(new URL("./cases.json", import.meta.url), JSON.stringify(out, null, 1) + "\n");
console.log(out.length, "tokenizers,", out.reduce((n, c) => n + c.cases.length, 0), "cases");
