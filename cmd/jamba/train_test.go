package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/safetensors"
	"github.com/jamba-go/jamba/train"
)

// trainFixture writes a tiny config initialised with jamba init, and a data
// folder holding a plain and a gzipped slice of the Go corpus.
func trainFixture(t *testing.T) (model, data, val, tok string) {
	t.Helper()
	tok = testutil.Fixture(t, "tokenizers/gostd/tokenizer.json")
	text, err := os.ReadFile(testutil.Fixture(t, "corpus/gostd_val.txt"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	os.WriteFile(cfg, []byte(`{"vocab_size": 4096, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3,
		"num_attention_heads": 2, "num_key_value_heads": 1, "attn_layer_period": 3, "attn_layer_offset": 1,
		"num_experts": 3, "num_experts_per_tok": 2, "mamba_d_state": 8, "mamba_dt_rank": 2}`), 0o644)
	model = filepath.Join(dir, "init")
	if _, stderr, code := run(t, "init", "--config", cfg, "--output", model, "--seed", "3"); code != 0 {
		t.Fatal(stderr)
	}
	data = filepath.Join(dir, "data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "a.txt"), text[:12000], 0o644)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(text[12000:24000])
	zw.Close()
	os.WriteFile(filepath.Join(data, "b.txt.gz"), gz.Bytes(), 0o644)
	val = filepath.Join(dir, "val.txt")
	os.WriteFile(val, text[len(text)-8000:], 0o644)
	return model, data, val, tok
}

// TestTrainResumeCommand runs 6 steps of jamba train (rows cut from the
// stream, and rows starting at line starts) in one go and as
// 3 + --resume + 3, and requires identical checkpoints, byte for byte: the
// resumed run must continue exactly.
func TestTrainResumeCommand(t *testing.T) {
	model, data, val, tok := trainFixture(t)
	for _, rows := range []string{"stream", "lines"} {
		t.Run(rows, func(t *testing.T) { testTrainResume(t, model, data, val, tok, rows) })
	}
}

func testTrainResume(t *testing.T, model, data, val, tok, rows string) {
	common := []string{"train", "--tokenizer", tok, "--data", data, "--val", val, "--seq", "32", "--batch", "2", "--accum", "2",
		"--steps", "6", "--warmup", "2", "--eval-every", "2", "--eval-tokens", "256", "--save-every", "0", "--quiet", "--lr", "3e-3",
		"--rows", rows}
	whole := filepath.Join(t.TempDir(), "whole")
	if _, stderr, code := run(t, append(common, "--model", model, "--output", whole)...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	legs := filepath.Join(t.TempDir(), "legs")
	if _, stderr, code := run(t, append(common, "--model", model, "--output", legs, "--stop-step", "3")...); code != 0 {
		t.Fatalf("first leg: exit %d: %s", code, stderr)
	}
	stdout, stderr, code := run(t, "train", "--resume", legs, "--data", data, "--val", val, "--quiet")
	if code != 0 {
		t.Fatalf("resume: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "resuming") || !strings.HasPrefix(stdout, "step 6 ") {
		t.Errorf("resume output: %q / %q", stdout, stderr)
	}
	for _, name := range []string{"model.safetensors", "optimizer.safetensors", "config.json", "tokenizer.json", "generation_config.json"} {
		a, err := os.ReadFile(filepath.Join(whole, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(legs, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "optimizer.safetensors" {
			// The metadata holds the wall time; compare the moments only.
			a, b = tensorBytes(t, filepath.Join(whole, name), "m", "v"), tensorBytes(t, filepath.Join(legs, name), "m", "v")
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the whole run and the resumed one", name)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(legs, "metrics.csv"))
	if n := strings.Count(string(csv), "\n"); n != 7 {
		t.Errorf("metrics.csv has %d lines, want a header and 6 steps", n)
	}
	if _, err := os.Stat(filepath.Join(legs, "loss.png")); err != nil {
		t.Error(err)
	}
	// The checkpoint runs in the other commands.
	if _, stderr, code := run(t, "grad", "--model", legs, "--ids", "5,6,7", "--output", filepath.Join(t.TempDir(), "g.safetensors")); code != 0 {
		t.Errorf("grad on the trained checkpoint: %s", stderr)
	}
}

// TestTrainWorkers checks --workers: the default is one worker per thread
// (at most --batch), the count is saved and a resume keeps it unless
// --workers is given, 1 runs one engine, and more workers than rows is an
// error.
func TestTrainWorkers(t *testing.T) {
	model, data, _, tok := trainFixture(t)
	common := []string{"train", "--tokenizer", tok, "--data", data, "--seq", "32", "--batch", "3", "--warmup", "1",
		"--eval-every", "0", "--save-every", "0", "--quiet"}
	dir := filepath.Join(t.TempDir(), "run")
	_, stderr, code := run(t, append(common, "--model", model, "--output", dir, "--steps", "4", "--stop-step", "1", "--workers", "3")...)
	if code != 0 || !strings.Contains(stderr, "3 data-parallel workers") {
		t.Fatalf("--workers 3: exit %d: %s", code, stderr)
	}
	_, stderr, code = run(t, "train", "--resume", dir, "--data", data, "--quiet", "--stop-step", "2")
	if code != 0 || !strings.Contains(stderr, "3 data-parallel workers") {
		t.Errorf("resume without --workers: exit %d: %s", code, stderr)
	}
	_, stderr, code = run(t, "train", "--resume", dir, "--data", data, "--quiet", "--stop-step", "3", "--workers", "1")
	if code != 0 || !strings.Contains(stderr, "one engine on all threads") {
		t.Errorf("resume with --workers 1: exit %d: %s", code, stderr)
	}
	if _, stderr, code = run(t, append(common, "--model", model, "--output", t.TempDir(), "--steps", "1", "--workers", "4")...); code == 0 {
		t.Errorf("4 workers for batches of 3 rows: exit 0: %s", stderr)
	}
}

// tensorBytes returns the raw bytes of the named tensors of a file.
func tensorBytes(t *testing.T, path string, names ...string) []byte {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []byte
	for _, n := range names {
		tt, err := f.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tt.Data...)
	}
	return out
}

func TestTrainUsage(t *testing.T) {
	for _, args := range [][]string{
		{"train", "--model", "x"},
		{"train", "--data", "x"},
		{"train", "--model", "x", "--resume", "y", "--data", "z", "--output", "o"},
	} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	_, stderr, code := run(t, "train", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, f := range []string{"model", "resume", "data", "val", "output", "tokenizer", "seq", "batch", "accum", "steps", "lr", "min-lr",
		"warmup", "weight-decay", "beta1", "beta2", "eps", "clip", "seed", "eval-every", "eval-tokens", "save-every", "recompute",
		"workers", "stop-step", "time-limit", "threads", "quiet", "log-every", "cpuprofile"} {
		if !strings.Contains(stderr, "  -"+f+" ") && !strings.Contains(stderr, "  -"+f+"\n") {
			t.Errorf("--help does not explain -%s", f)
		}
	}
}

// TestOverrideOptions: a resumed run keeps its saved options except those
// whose flags are given again, which take the new values.
func TestOverrideOptions(t *testing.T) {
	saved := train.DefaultOptions()
	saved.Seq, saved.LR, saved.Rows, saved.Workers = 64, 3e-4, train.RowsLines, 2
	want := saved
	want.LR, want.Recompute, want.Steps = 5e-4, true, 77

	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	o := &train.Options{}
	d := train.DefaultOptions()
	d.Rows = train.RowsStream
	bindTrainOptions(fs, o, d)
	fs.String("data", "", "")
	if err := fs.Parse([]string{"--data", "x", "--lr", "5e-4", "--recompute", "--steps", "77"}); err != nil {
		t.Fatal(err)
	}
	overrideOptions(&saved, fs)
	if saved != want {
		t.Errorf("after the override:\n got %+v\nwant %+v", saved, want)
	}
}
