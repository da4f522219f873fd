// Package tokenizer loads Hugging Face tokenizer.json files and encodes and
// decodes text exactly as the Hugging Face tokenizers library does.
//
// Supported components:
//
//   - model: BPE (merges as "a b" strings or ["a","b"] pairs, byte_fallback,
//     unk_token, fuse_unk, ignore_merges, continuing_subword_prefix,
//     end_of_word_suffix; dropout is ignored, encoding is deterministic);
//   - normalizers: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase,
//     Strip, StripAccents;
//   - pre-tokenizers: Sequence, Metaspace, Split, ByteLevel, Whitespace,
//     WhitespaceSplit, Digits, Punctuation, BertPreTokenizer, CharDelimiterSplit;
//   - post-processors: TemplateProcessing, ByteLevel, BertProcessing,
//     RobertaProcessing, Sequence, plus add_bos_token/add_eos_token of
//     tokenizer_config.json;
//   - decoders: Sequence, Replace, ByteFallback, Fuse, Strip, Metaspace,
//     ByteLevel, WordPiece, BPEDecoder.
//
// Any other component type is a load error naming the type. Split regexes are
// Oniguruma regexes in Hugging Face; the look-ahead patterns of the GPT-2,
// Llama-3 and Qwen families are matched by hand-written matchers, other
// patterns are translated to Go's regexp syntax when that is exact, and a
// pattern that cannot be translated is a load error naming it.
//
// A Tokenizer is safe for concurrent use. A StreamDecoder is not.
package tokenizer
