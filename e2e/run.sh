#!/usr/bin/env bash
# End-to-end test: builds jamba, starts `jamba serve` (the embedded demo
# model, and the LoRA adapter testdata/lora/gostd-nethttp beside it as the
# model "nethttp") on an ephemeral loopback port, and drives it with the official
# openai npm package (pinned in package-lock.json). Needs Go, Node 20+ and
# the npm registry.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

(cd .. && go build -o "$tmp/jamba" ./cmd/jamba)
npm ci --no-audit --no-fund --loglevel=error

adapter_dir=$(cd ../testdata/lora/gostd-nethttp && pwd)
"$tmp/jamba" serve --addr 127.0.0.1:0 --max-batch 4 --lora "nethttp=$adapter_dir" 2>"$tmp/serve.log" &
pid=$!
for _ in $(seq 1 300); do
  grep -q 'msg=ready' "$tmp/serve.log" && break
  if ! kill -0 "$pid" 2>/dev/null; then cat "$tmp/serve.log" >&2; echo "e2e: jamba serve exited" >&2; exit 1; fi
  sleep 0.1
done
url=$(sed -n 's/.*msg=listening url=\(http:[^ ]*\).*/\1/p' "$tmp/serve.log" | head -n 1)
if [ -z "$url" ] || ! grep -q 'msg=ready' "$tmp/serve.log"; then
  cat "$tmp/serve.log" >&2; echo "e2e: jamba serve did not get ready" >&2; exit 1
fi

model=$(sed -n 's/.*msg=ready model=\([^ ]*\).*/\1/p' "$tmp/serve.log" | head -n 1)

status=0
JAMBA_URL="$url" JAMBA_MODEL="$model" JAMBA_BIN="$tmp/jamba" JAMBA_ADAPTER=nethttp JAMBA_ADAPTER_DIR="$adapter_dir" \
  node --test test.mjs || status=$?

# SIGTERM must drain and exit 0.
kill -TERM "$pid"
if ! wait "$pid"; then echo "e2e: jamba serve did not exit cleanly on SIGTERM" >&2; status=1; fi
pid=
if [ "$status" != 0 ]; then cat "$tmp/serve.log" >&2; fi
exit "$status"
