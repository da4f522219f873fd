package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/kernels"
)

// TestBenchContext: --context D times decode after D tokens; without
// --prompt-tokens the prompt is those D tokens (one prefill, both numbers),
// with a different --prompt-tokens the context is filled separately. The
// KV type is in the result, and the predicted memory is what 'jamba
// inspect --context' gives for the cache bench holds.
func TestBenchContext(t *testing.T) {
	type res struct {
		KVCache        string  `json:"kv_cache"`
		PromptTokens   int     `json:"prompt_tokens"`
		PrefillChunk   int     `json:"prefill_chunk"`
		Context        int     `json:"context"`
		GenTokens      int     `json:"gen_tokens"`
		PrefillTokPerS float64 `json:"prefill_tokens_per_s"`
		DecodeTokPerS  float64 `json:"decode_tokens_per_s"`
		PeakRSS        int64   `json:"peak_rss_bytes"`
		WeightBytes    int64   `json:"weight_bytes"`
		KVBytes        int64   `json:"kv_cache_bytes"`
		MambaBytes     int64   `json:"mamba_state_bytes"`
		PredictedBytes int64   `json:"predicted_bytes"`
		BaseContext    int     `json:"baseline_context"`
		BaseTokPerS    float64 `json:"baseline_decode_tokens_per_s"`
		RatioToBase    float64 `json:"decode_ratio_to_baseline"`
	}
	bench := func(args ...string) (res, string) {
		t.Helper()
		args = append([]string{"bench", "--gen-tokens", "2", "--bandwidth-bytes", "1048576", "--json"}, args...)
		out, stderr, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var r res
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
			t.Fatalf("%v: %v in %q", args, err, out)
		}
		return r, stderr
	}
	inspect := func(ctx string) (kv16, kv32, mamba, weights int64) {
		t.Helper()
		out, stderr, code := run(t, "inspect", "--context", ctx, "--json")
		if code != 0 {
			t.Fatalf("inspect: exit %d: %s", code, stderr)
		}
		var r struct {
			KV16    int64 `json:"kv_cache_16bit_bytes"`
			KV32    int64 `json:"kv_cache_bytes"`
			Mamba   int64 `json:"mamba_state_bytes"`
			Weights int64 `json:"weight_bytes"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.KV16, r.KV32, r.Mamba, r.Weights
	}

	r, stderr := bench("--context", "300", "--prefill-chunk", "128", "--kv-cache", "bf16")
	if r.KVCache != "bf16" || r.PromptTokens != 300 || r.Context != 300 || r.PrefillChunk != 128 || r.GenTokens != 2 {
		t.Errorf("--context 300: got %+v", r)
	}
	if !strings.Contains(stderr, "prefill 300/300 tokens") || strings.Contains(stderr, "filling") {
		t.Errorf("--context 300: progress %q", stderr)
	}
	if !(r.PrefillTokPerS > 0 && r.DecodeTokPerS > 0 && r.PeakRSS > 0) {
		t.Errorf("--context 300: speeds or RSS missing: %+v", r)
	}
	// bench holds a cache of context + gen + 2 tokens (the untimed step).
	kv16, _, mamba, weights := inspect("304")
	if r.KVBytes != kv16 || r.MambaBytes != mamba || r.WeightBytes != weights || r.PredictedBytes != kv16+mamba+weights {
		t.Errorf("predicted memory %d = %d + %d + %d, inspect says KV %d, state %d, weights %d",
			r.PredictedBytes, r.WeightBytes, r.KVBytes, r.MambaBytes, kv16, mamba, weights)
	}

	r, stderr = bench("--prompt-tokens", "40", "--context", "200")
	if r.KVCache != "f32" || r.PromptTokens != 40 || r.Context != 200 {
		t.Errorf("--prompt-tokens 40 --context 200: got %+v", r)
	}
	if !strings.Contains(stderr, "filling 200 tokens of context") || !strings.Contains(stderr, "prefill 200/200 tokens") {
		t.Errorf("--prompt-tokens 40 --context 200: progress %q", stderr)
	}
	_, kv32, _, _ := inspect("204")
	if r.KVBytes != kv32 {
		t.Errorf("f32 KV predicted %d, inspect says %d", r.KVBytes, kv32)
	}

	// --baseline-context: a second cache, both speeds and their ratio
	// (a ratio of two positive speeds taken in the same rounds: bounded
	// well away from 0 and infinity on a demo model whose steps differ
	// little), and the second cache in the prediction.
	r, stderr = bench("--context", "200", "--baseline-context", "50")
	if r.BaseContext != 50 || r.Context != 200 || !strings.Contains(stderr, "filling 50 tokens of baseline context") {
		t.Errorf("--baseline-context 50: got %+v, progress %q", r, stderr)
	}
	if !(r.BaseTokPerS > 0 && r.RatioToBase > 0.05 && r.RatioToBase < 20) {
		t.Errorf("--baseline-context 50: speeds %+v", r)
	}
	_, kvCtx, stCtx, _ := inspect("204")
	_, kvBase, stBase, _ := inspect("54")
	if r.KVBytes != kvCtx+kvBase || r.MambaBytes != stCtx+stBase {
		t.Errorf("--baseline-context 50: predicted KV %d, state %d; inspect says %d+%d, %d+%d", r.KVBytes, r.MambaBytes, kvCtx, kvBase, stCtx, stBase)
	}

	for _, args := range [][]string{
		{"bench", "--context", "-1"},
		{"bench", "--prefill-chunk", "0"},
		{"bench", "--context", "100000000"},
		{"bench", "--baseline-context", "0"},
		{"bench", "--baseline-context", "100000000"},
	} {
		if _, stderr, code := run(t, args...); code != 2 || !strings.Contains(stderr, "usage error") {
			t.Errorf("%v: exit %d, %q (want a usage error)", args, code, stderr)
		}
	}
}

// TestBenchDeviceFlags: the flags of one device are refused, naming the
// flag, with the other (before any GPU is looked for), and --help shows
// both forms.
func TestBenchDeviceFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--device", "cuda", "--quantize", "q4"}, "--quantize"},
		{[]string{"--device", "cuda", "--kv-cache", "bf16"}, "--kv-cache"},
		{[]string{"--device", "cuda", "--prefill-chunk", "64"}, "--prefill-chunk"},
		{[]string{"--device", "cuda", "--cpuprofile", "p.out"}, "--cpuprofile"},
		{[]string{"--device", "cuda", "--baseline-context", "1024"}, "--baseline-context"},
		{[]string{"--device", "cuda", "--no-mmap"}, "--no-mmap"},
		{[]string{"--device", "cuda", "--context", "-1"}, "--context"},
		{[]string{"--device", "cuda", "--model", "m", "--config", "c.json"}, "--config"},
		{[]string{"--device", "cuda", "--gen-tokens", "0"}, "--gen-tokens"},
		{[]string{"--device", "cuda", "--prompt-tokens", "-1"}, "--prompt-tokens"},
		{[]string{"--stages"}, "--stages"},
		{[]string{"--batches", "1,8"}, "--batches"},
		{[]string{"--config", "c.json"}, "--config"},
	} {
		args := append([]string{"bench"}, c.args...)
		if _, stderr, code := run(t, args...); code != 2 || !strings.Contains(stderr, "usage error") || !strings.Contains(stderr, c.flag) {
			t.Errorf("%v: exit %d, %q (want a usage error naming %s)", args, code, stderr, c.flag)
		}
	}
	_, stderr, _ := run(t, "bench", "--help")
	for _, want := range []string{"--quantize int8|q4", "jamba bench --device cuda", "--stages", "--context D"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("bench --help lacks %q", want)
		}
	}
}

// TestBenchActivations: --activations int16 reaches the kernels and the
// result (with --quantize q4, whose Q4_K blocks it applies to), the
// default is int8, an unknown width is a usage error, and --device cuda
// refuses it.
func TestBenchActivations(t *testing.T) {
	defer kernels.SetActivationBits(16)
	var r struct {
		Activations string `json:"activations"`
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--quantize", "q4", "--activations", "int16"}, "int16"},
		{[]string{"--quantize", "q4"}, "int8"},
		{[]string{"--quantize", "q4", "--activations", "int8"}, "int8"},
	} {
		args := append([]string{"bench", "--prompt-tokens", "12", "--gen-tokens", "2", "--bandwidth-bytes", "1048576", "--json"}, c.args...)
		out, stderr, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
			t.Fatal(err)
		}
		if r.Activations != c.want || kernels.ActivationBits() != map[string]int{"int8": 8, "int16": 16}[c.want] {
			t.Errorf("%v: activations %q, kernels at %d bits; want %s", c.args, r.Activations, kernels.ActivationBits(), c.want)
		}
	}
	for _, args := range [][]string{
		{"bench", "--activations", "int4"},
		{"bench", "--device", "cuda", "--activations", "int8"},
	} {
		if _, stderr, code := run(t, args...); code != 2 || !strings.Contains(stderr, "--activations") {
			t.Errorf("%v: exit %d, %q (want a usage error naming --activations)", args, code, stderr)
		}
	}
}
