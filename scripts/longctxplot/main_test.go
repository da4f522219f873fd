package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoad reads a sweep folder as longctx-sweep.sh writes it: llama.cpp's
// prefill from its -p N run or, without one, from the time stamps of its
// depth run; decode from its -d N run; ours from jamba bench's JSON line;
// the peak RSS from /usr/bin/time -v. The table pairs runs by tag.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// 1K, pair p1: both llama.cpp runs.
	write("llama-pp-1024-p1.json", `{"n_prompt": 1024, "n_gen": 0, "n_depth": 0, "avg_ts": 200.0}`+"\n")
	write("llama-tg-1024-p1.json", `{"n_prompt": 0, "n_gen": 32, "n_depth": 1024, "avg_ts": 50.0}`+"\n")
	write("llama-tg-1024-p1.log", "100.0 llama-bench: benchmark 1/1: depth run 1/1\n104.0 llama-bench: benchmark 1/1: generation run 1/1\n")
	write("jamba-bf16-1024-p1.json", "noise\n"+`{"prefill_tokens_per_s": 300, "decode_tokens_per_s": 55, "context": 1024, "peak_rss_bytes": 2147483648, "predicted_bytes": 2000000000}`+"\n")
	write("jamba-bf16-1024-p1.time", "\tCommand being timed: \"jamba\"\n\tMaximum resident set size (kbytes): 2200000\n")
	// 32K, pair p1: the prefill only from the depth run (8 s for 32768 tokens).
	write("llama-tg-32768-p1.json", `{"n_prompt": 0, "n_gen": 32, "n_depth": 32768, "avg_ts": 40.0}`+"\n")
	write("llama-tg-32768-p1.log", "5.0 llama-bench: benchmark 1/1: warmup generation run\n10.5 llama-bench: benchmark 1/1: depth run 1/1\n18.5 llama-bench: benchmark 1/1: generation run 1/1\n")
	write("jamba-bf16-32768-p1.json", `{"prefill_tokens_per_s": 8192, "decode_tokens_per_s": 50, "context": 32768}`+"\n")
	write("unrelated.json", "{}")

	runs, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	find := func(engine string, n int) *run {
		for _, r := range runs {
			if r.engine == engine && r.context == n {
				return r
			}
		}
		t.Fatalf("no run of %s at %d", engine, n)
		return nil
	}
	l1 := find("llama.cpp", 1024)
	if l1.prefill != 200 || l1.decode != 50 || l1.depthPP != 256 {
		t.Errorf("llama.cpp at 1K: %+v (want prefill 200 from -p, 256 from the depth run, decode 50)", l1)
	}
	if l32 := find("llama.cpp", 32768); l32.prefill != 4096 || l32.decode != 40 {
		t.Errorf("llama.cpp at 32K: %+v (want prefill 32768/8 s = 4096 from the depth run)", l32)
	}
	j1 := find("jamba, bf16 KV", 1024)
	if j1.prefill != 300 || j1.decode != 55 || j1.rssKiB != 2200000 || j1.jambaRS != 2147483648 || j1.predict != 2000000000 {
		t.Errorf("jamba at 1K: %+v", j1)
	}
	if r := pairRatios(runs, "jamba, bf16 KV", 32768, prefillOf); len(r) != 1 || r[0] != 2 {
		t.Errorf("prefill ratio at 32K: %v, want [2]", r)
	}
	var out bytes.Buffer
	if err := table(&out, runs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| 1K | 1 | 200.0 | 300.0 | **1.50x** |", "| 32K | 1 | 40.0 | 50.0 | **1.25x** |", "decode(32K) ÷ decode(1K): 0.91"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	png := filepath.Join(dir, "c.png")
	if err := draw2(png, runs, "note"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("no PNG written: %v", err)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}
