#!/bin/sh
# Compares encoding ../shared/fixtures/corpus/gostd_val.txt with this
# package and with the Hugging Face Rust tokenizer (Node binding), in one run.
# Usage, from the repository root: sh tokenizer/bench/run.sh
set -e
HF=${HFBENCH:-/tmp/hfbench}
[ -d "$HF/node_modules/@anush008/tokenizers" ] || (mkdir -p "$HF" && cd "$HF" && npm init -y >/dev/null && npm install @anush008/tokenizers >/dev/null)
S=../shared/fixtures
for n in gostd llama2 qwen3; do
	NODE_PATH=$HF/node_modules node tokenizer/bench/hf_encode.mjs $S/tokenizers/$n/tokenizer.json $S/corpus/gostd_val.txt 7
done
go test ./tokenizer -run '^$' -bench 'EncodeGostdVal' -benchmem -count 3 -cpu 1,2
