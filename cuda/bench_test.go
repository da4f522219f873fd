package cuda

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/model"
)

// TestBenchConfig runs Bench (what `jamba bench --device cuda --config C`
// runs) on random weights when JAMBA_BENCH_CONFIG names a config.json, for
// machines that have the test binary but not the jamba command. It
// checks nothing about speed; the numbers go to JAMBA_BENCH_OUT as JSON.
// Options: JAMBA_BENCH_PROMPT, JAMBA_BENCH_GEN, JAMBA_BENCH_BATCHES (1,8,32),
// JAMBA_BENCH_CONTEXT, JAMBA_BENCH_PROFILE (non-empty: stage times).
func TestBenchConfig(t *testing.T) {
	path := os.Getenv("JAMBA_BENCH_CONFIG")
	if path == "" {
		t.Skip("JAMBA_BENCH_CONFIG not set")
	}
	dev := gpu(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := model.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string, d int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
			return v
		}
		return d
	}
	o := BenchOptions{PromptTokens: env("JAMBA_BENCH_PROMPT", 2048), GenTokens: env("JAMBA_BENCH_GEN", 32),
		Context: env("JAMBA_BENCH_CONTEXT", 0), Seed: 1, Progress: os.Stderr, Profile: os.Getenv("JAMBA_BENCH_PROFILE") != ""}
	for _, s := range strings.Split(os.Getenv("JAMBA_BENCH_BATCHES"), ",") {
		if b, err := strconv.Atoi(s); err == nil {
			o.Batches = append(o.Batches, b)
		}
	}
	if len(o.Batches) == 0 {
		o.Batches = []int{1}
	}
	m, err := NewRandom(dev, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := Bench(m, o)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r)
	t.Logf("%s", out)
	if p := os.Getenv("JAMBA_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
