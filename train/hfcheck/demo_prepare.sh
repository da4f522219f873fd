#!/bin/sh
# Prepares demo.py's inputs: the ids of the prompt "func (s *Server) " as
# `jamba generate` encodes it (BOS first), our greedy continuation of 60 tokens
# and `jamba forward`'s logits over both. Run from the repository root; writes
# .device/democheck/ (git-ignored), which the device run carries.
set -eu
out=.device/democheck
rm -rf "$out" && mkdir -p "$out"
go build -o "$out/jamba" ./cmd/jamba
j=$out/jamba
prompt=$(printf 'func (s *Server) ' | $j tokenize | tr -d '[] ')
gen=$($j generate --ids "$prompt" --temperature 0 --max-tokens 60 --print-ids | tail -n 1)
echo "{\"prompt\": [$prompt], \"generated\": [$gen]}" > "$out/ids.json"
$j forward --ids "$prompt,$gen" --output "$out/logits.safetensors"
rm "$j"
