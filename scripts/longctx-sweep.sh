#!/usr/bin/env bash
# Long-context sweep: prefill and decode against context length, this engine
# and llama.cpp side by side on the same GGUF file of jamba-small.
#
#   scripts/longctx-sweep.sh /path/to/llama-bench [OUT_DIR]
#
# For every context N and every pair, the two engines run back to back (which
# one goes first alternates from pair to pair), so both see the same load:
#
#   llama-bench -m F.gguf -t 2 -r 1 -p N -n 0            prefill of N tokens
#   llama-bench -m F.gguf -t 2 -r 1 -p 0 -n 32 -d N --progress
#                                                         32 decode steps after N
#   jamba bench --model F.gguf --threads 2 --context N --gen-tokens 32 --json
#                                                         both, from one prefill
#
# llama-bench's "-d N" run first computes the N tokens of context with the
# same call as its "-p N" test (test_prompt on an empty cache), and --progress
# says when that starts ("depth run") and ends ("generation run"); every line
# of stderr is saved with its time, so the depth run gives llama.cpp's prefill
# of N tokens as well. From PP_UNTIL tokens up the "-p N -n 0" run is left out
# and the prefill comes from the depth run: at 32K tokens a prefill takes
# minutes, and "-p N" runs one more as its warm-up. Below it both are run, which
# shows that the two agree.
#
# The model: ../shared/bench/jamba-small.json, random bf16 weights from
# `jamba init`, written as a BF16 GGUF by `jamba convert`. Both engines read that
# one file: llama.cpp multiplies its BF16 weights directly, and so does this
# engine (it uses F32 and BF16 GGUF tensors in place, with the kernels of a
# bf16 safetensors folder), so the two runs share the weights' bits.
#
# Environment (defaults in brackets):
#   CONTEXTS  contexts of the interleaved pairs  [1024 2048 4096 8192 16384 32768]
#   PAIRS     pairs per context                   [3]
#   ONCE      contexts run once after the pairs   [] (e.g. "65536 131072")
#   KV        this engine's --kv-cache types      [bf16] (llama.cpp keeps its default, F16)
#   THREADS   threads of both engines             [2]
#   GEN       decode steps                        [32]
#   PP_UNTIL  contexts from this one up take llama.cpp's prefill from the
#             depth run                          [16384]
#   JAMBA     a built jamba binary                [built from this checkout into OUT_DIR]
#   ONLY      "jamba" or "llama": run only that engine   []
#   SWAP      1: this engine goes first in the odd pairs  [0]
#   PROFILE_AT  a context whose first run of this engine also writes a CPU
#             profile of its prefill, OUT_DIR/prefill-N.pprof (sampling costs
#             about 1%)                            []
#
# Results: OUT_DIR/*.json (one file per run; jamba's JSON line, llama-bench's
# JSONL), OUT_DIR/*.time (/usr/bin/time -v of each run: peak RSS) and
# OUT_DIR/machine.txt. Summarise and plot them with
#   go run ./scripts/longctxplot -in OUT_DIR -png docs/longctx.png
# This script runs a built llama-bench; it does not build llama.cpp.
set -euo pipefail

if [[ $# -lt 1 || ! -x $1 ]]; then
	echo "usage: $0 /path/to/llama-bench [OUT_DIR]" >&2
	exit 2
fi
LLAMA_BENCH=$(realpath "$1")
OUT=${2:-/tmp/longctx-sweep}
CONTEXTS=${CONTEXTS:-"1024 2048 4096 8192 16384 32768"}
PAIRS=${PAIRS:-3}
ONCE=${ONCE:-}
KV=${KV:-bf16}
THREADS=${THREADS:-2}
GEN=${GEN:-32}
PP_UNTIL=${PP_UNTIL:-16384}
PROFILE_AT=${PROFILE_AT:-}
SWAP=${SWAP:-0}
ONLY=${ONLY:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}

mkdir -p "$OUT"
if [[ -z ${JAMBA:-} ]]; then
	(cd "$ROOT" && go build -o "$OUT/jamba" ./cmd/jamba)
	JAMBA=$OUT/jamba
fi
MODEL_DIR=$OUT/jamba-small
GGUF=$OUT/jamba-small-bf16.gguf
if [[ ! -f $MODEL_DIR/config.json ]]; then
	"$JAMBA" init --config "$SHARED/bench/jamba-small.json" --output "$MODEL_DIR" --dtype bf16
fi
if [[ ! -f $GGUF ]]; then
	"$JAMBA" convert --model "$MODEL_DIR" --output "$GGUF" --type bf16
fi

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "host: $(uname -srm)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "cores: $(nproc)"
	echo "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
	echo "avx2+fma: $(grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && echo yes || echo no)"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "jamba: $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet || echo '+changes')"
	echo "llama-bench: $LLAMA_BENCH"
	echo "model: $GGUF ($(stat -L -c %s "$GGUF") bytes)"
	echo "threads: $THREADS, gen: $GEN, kv: $KV, pairs: $PAIRS, contexts: $CONTEXTS, once: $ONCE"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# timed NAME CMD...: runs CMD with stdout into NAME.json, /usr/bin/time -v
# into NAME.time and stderr, each line after its Unix time, into NAME.log; a
# run that exists already is kept (a sweep can resume).
timed() {
	local name=$1
	shift
	if [[ -s $OUT/$name.json ]]; then
		echo "== $name: kept" >&2
		return
	fi
	echo "== $name ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg)): $*" >&2
	if /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.json.part" 2> >(stamp >"$OUT/$name.log"); then
		mv "$OUT/$name.json.part" "$OUT/$name.json"
	else
		echo "== $name failed" >&2
	fi
}

stamp() {
	local line
	while IFS= read -r line; do
		printf '%s %s\n' "$(date +%s.%N)" "$line"
	done
}

llama() {
	local n=$1 tag=$2
	if [[ $ONLY == jamba ]]; then
		return
	fi
	if ((n < PP_UNTIL)); then
		timed "llama-pp-$n-$tag" "$LLAMA_BENCH" -m "$GGUF" -t "$THREADS" -r 1 -p "$n" -n 0 -o jsonl
	fi
	timed "llama-tg-$n-$tag" "$LLAMA_BENCH" -m "$GGUF" -t "$THREADS" -r 1 -p 0 -n "$GEN" -d "$n" --progress -o jsonl
}

ours() {
	local n=$1 tag=$2 kv prof
	if [[ $ONLY == llama ]]; then
		return
	fi
	for kv in $KV; do
		prof=()
		if [[ $n == "$PROFILE_AT" && ! -f $OUT/prefill-$n.pprof ]]; then
			prof=(--prefill-cpuprofile "$OUT/prefill-$n.pprof")
		fi
		timed "jamba-$kv-$n-$tag" "$JAMBA" bench --model "$GGUF" --threads "$THREADS" --kv-cache "$kv" \
			--context "$n" --gen-tokens "$GEN" --bandwidth-bytes 268435456 --json "${prof[@]}"
	done
}

for ((p = 1; p <= PAIRS; p++)); do
	for n in $CONTEXTS; do
		if (((p + SWAP) % 2)); then
			llama "$n" "p$p"
			ours "$n" "p$p"
		else
			ours "$n" "p$p"
			llama "$n" "p$p"
		fi
	done
done
for n in $ONCE; do
	llama "$n" once
	ours "$n" once
done
echo "done: go run ./scripts/longctxplot -in $OUT -png docs/longctx.png" >&2
