package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/safetensors"
)

// TestStudyAttentionCommand writes the maps of tiny-moe's attention layer
// for given ids and reads them back: one tensor layers.4.attention of
// shape [heads, T, T], rows that sum to 1, zeros above the diagonal.
func TestStudyAttentionCommand(t *testing.T) {
	dir := testutil.Fixture(t, "models/tiny-moe")
	out := filepath.Join(t.TempDir(), "att.safetensors")
	plots := filepath.Join(t.TempDir(), "plots")
	stdout, stderr, code := run(t, "study", "attention", "--model", dir, "--ids", "5,17,30,5,17,30,9", "--output", out, "--plots", plots, "--json", "--probe-len", "16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Tokens int
		Heads  []map[string]float64
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if rep.Tokens != 7 || len(rep.Heads) != 4 {
		t.Fatalf("report: %+v", rep)
	}
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tt, err := f.Tensor("layers.4.attention")
	if err != nil {
		t.Fatal(err)
	}
	if len(tt.Shape) != 3 || tt.Shape[0] != 4 || tt.Shape[1] != 7 || tt.Shape[2] != 7 {
		t.Fatalf("shape %v, want [4 7 7]", tt.Shape)
	}
	w, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	for h := range 4 {
		for q := range 7 {
			var sum float64
			for k := range 7 {
				v := w[(h*7+q)*7+k]
				if k > q && v != 0 {
					t.Fatalf("head %d query %d key %d: %v above the diagonal", h, q, k, v)
				}
				sum += float64(v)
			}
			// float32 weights normalised by one float32 reciprocal.
			if math.Abs(sum-1) > 1e-5 {
				t.Fatalf("head %d query %d: weights sum to %v", h, q, sum)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(plots, "attention-layer4.png")); err != nil {
		t.Fatal(err)
	}
	dense := testutil.Fixture(t, "models/tiny-moe-variant")
	if _, stderr, code := run(t, "study", "attention", "--model", dense); code == 0 || !strings.Contains(stderr, "exactly one of") {
		t.Errorf("no input: exit %d, %q", code, stderr)
	}
}

// TestStudyStateCommand: one row per Mamba layer, importance for every
// layer, the plots.
func TestStudyStateCommand(t *testing.T) {
	dir := testutil.Fixture(t, "models/tiny-moe")
	plots := t.TempDir()
	stdout, stderr, code := run(t, "study", "state", "--model", dir, "--ids", "5,17,30,5,17,30,9,11,12", "--plots", plots, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Tokens      int
		MambaLayers []map[string]any `json:"mamba_layers"`
		Importance  []map[string]any
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if rep.Tokens != 9 || len(rep.MambaLayers) != 7 || len(rep.Importance) != 8 {
		t.Fatalf("report: %d tokens, %d Mamba layers, %d importances", rep.Tokens, len(rep.MambaLayers), len(rep.Importance))
	}
	for _, name := range []string{"state.png", "importance.png"} {
		if _, err := os.Stat(filepath.Join(plots, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStudyAblateCommand runs a two-variant ablation of a few steps
// through the command line and checks its outputs and summary.
func TestStudyAblateCommand(t *testing.T) {
	out := t.TempDir()
	stdout, stderr, code := run(t, "study", "ablate", "--output", out, "--variants", "mamba,1:7", "--seeds", "1",
		"--hidden", "16", "--heads", "2", "--intermediate", "24", "--steps", "2", "--seq", "40", "--batch", "2",
		"--eval-every", "1", "--eval-tokens", "80", "--eval-examples", "2", "--workers", "2", "--warmup", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, name := range []string{"results.csv", "loss.png", "tasks.png", "runs/1-7-s1/model.safetensors", "runs/mamba-s1/metrics.csv"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(stdout, "mamba") || !strings.Contains(stdout, "1:7") || !strings.Contains(stdout, "mqar") {
		t.Fatalf("summary: %q", stdout)
	}
	// The trained model is a checkpoint the other study tools read.
	if _, stderr, code := run(t, "study", "tasks", "--model", filepath.Join(out, "runs/1-7-s1"), "--examples", "2", "--tasks", "mqar"); code != 0 {
		t.Fatalf("study tasks on the trained model: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, "study", "ablate", "--output", out, "--variants", "2:9"); code != 2 || !strings.Contains(stderr, "unknown variant") {
		t.Errorf("bad variant: exit %d, %q", code, stderr)
	}
	if _, stderr, code := run(t, "study", "ablate", "--output", out, "--init-range", "-0.1"); code != 2 || !strings.Contains(stderr, "--init-range") {
		t.Errorf("negative --init-range: exit %d, %q", code, stderr)
	}
}

// TestStudyTasksOffset scores the demo model (a text model) with the tasks'
// ids moved among its word pieces, and refuses an offset past its
// vocabulary.
func TestStudyTasksOffset(t *testing.T) {
	stdout, stderr, code := run(t, "study", "tasks", "--offset", "1000", "--bos-id", "1", "--tasks", "induction", "--examples", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "induction") {
		t.Errorf("no induction line: %q", stdout)
	}
	if _, stderr, code := run(t, "study", "tasks", "--offset", "100000", "--tasks", "induction", "--examples", "2"); code == 0 || !strings.Contains(stderr, "vocabulary") {
		t.Errorf("offset past the vocabulary: exit %d, %q", code, stderr)
	}
}

// TestStudyAttentionGGUF: the maps of llama.cpp's bf16 GGUF of
// hf-gostd-13m match those of the Hugging Face checkpoint it was converted
// from (the same bf16 weights).
func TestStudyAttentionGGUF(t *testing.T) {
	hf := testutil.Fixture(t, "models/hf-gostd-13m")
	gg := testutil.Fixture(t, "gguf/gostd-13m-bf16.gguf")
	read := func(model string) []float32 {
		out := filepath.Join(t.TempDir(), "att.safetensors")
		if _, stderr, code := run(t, "study", "attention", "--model", model, "--ids", "1,300,301,302,300,301", "--output", out, "--probe-n", "0"); code != 0 {
			t.Fatalf("%s: exit %d: %s", model, code, stderr)
		}
		f, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tt, err := f.Tensor("layers.4.attention")
		if err != nil {
			t.Fatal(err)
		}
		w, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	a, b := read(hf), read(gg)
	if len(a) != len(b) {
		t.Fatalf("%d weights from the checkpoint, %d from the GGUF file", len(a), len(b))
	}
	var worst float64
	for i := range a {
		worst = max(worst, math.Abs(float64(a[i])-float64(b[i])))
	}
	// The same bf16 weights, but the GGUF file's tensors reach the kernels
	// in another storage (its own block type), so the products round in
	// another order: float32 rounding of weights in [0, 1] (1.8e-7 seen);
	// 2e-6 leaves a margin of ten and still catches a wrong tensor.
	if worst > 2e-6 {
		t.Fatalf("the GGUF file's maps differ from the checkpoint's by up to %g", worst)
	}
	t.Logf("largest difference %.2g", worst)
}
