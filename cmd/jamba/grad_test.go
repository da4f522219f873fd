package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/safetensors"
)

// TestGradCommand runs jamba grad on the two reference rows of fixtures and
// compares the printed losses with reference.json (1e-5 relative, the
// issue's bar; float32 lands near 1e-7) and every written gradient with
// reference_grads.safetensors (1e-3 relative L2 per tensor, the bar;
// float32 lands near 1e-5; exactly zero references must stay below 1e-7).
func TestGradCommand(t *testing.T) {
	for _, name := range []string{"tiny-moe", "tiny-moe-variant", "tiny-dense"} {
		t.Run(name, func(t *testing.T) {
			dir := testutil.Fixture(t, "models/"+name)
			ref, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			idsT, _ := ref.Tensor("input_ids")
			ids, _ := idsT.Int64()
			ref.Close()
			B, T := idsT.Shape[0], idsT.Shape[1]
			out := filepath.Join(t.TempDir(), "grads.safetensors")
			args := []string{"grad", "--model", dir, "--output", out}
			for b := 0; b < B; b++ {
				var s []string
				for _, v := range ids[b*T : (b+1)*T] {
					s = append(s, fmt.Sprint(v))
				}
				args = append(args, "--ids", strings.Join(s, ","))
			}
			stdout, stderr, code := run(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got := map[string]float64{}
			for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
				f := strings.Fields(line)
				if len(f) != 2 {
					t.Fatalf("bad output line %q", line)
				}
				v, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					t.Fatalf("bad output line %q", line)
				}
				got[f[0]] = v
			}
			var want struct {
				Loss        float64 `json:"loss"`
				LossWithAux float64 `json:"loss_with_aux"`
			}
			data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			for k, w := range map[string]float64{"loss": want.Loss, "loss_with_aux": want.LossWithAux} {
				if math.Abs(got[k]-w) > 1e-5*math.Abs(w) {
					t.Errorf("%s = %.9g, want %.9g", k, got[k], w)
				}
			}
			if got["tokens"] != float64(B*(T-1)) {
				t.Errorf("tokens = %v, want %d", got["tokens"], B*(T-1))
			}
			compareGradFiles(t, out, testutil.Fixture(t, "models/"+name+"/reference_grads.safetensors"))
		})
	}
}

func compareGradFiles(t *testing.T, gotPath, wantPath string) {
	t.Helper()
	g, err := safetensors.Open(gotPath)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	w, err := safetensors.Open(wantPath)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if g.Len() != w.Len() {
		t.Errorf("%d gradient tensors, reference %d", g.Len(), w.Len())
	}
	for _, name := range w.Names() {
		wt, _ := w.Tensor(name)
		gt, err := g.Tensor(name)
		if err != nil {
			t.Errorf("no gradient %s: %v", name, err)
			continue
		}
		if gt.DType != safetensors.F32 || fmt.Sprint(gt.Shape) != fmt.Sprint(wt.Shape) {
			t.Errorf("%s: %s%v, reference %s%v", name, gt.DType, gt.Shape, wt.DType, wt.Shape)
			continue
		}
		want, _ := wt.Float64()
		got, _ := gt.Float64()
		var num, den, maxAbs float64
		for i := range want {
			num += (got[i] - want[i]) * (got[i] - want[i])
			den += want[i] * want[i]
			maxAbs = max(maxAbs, math.Abs(got[i]))
		}
		switch {
		case den == 0 && maxAbs >= 1e-7:
			t.Errorf("%s: reference is zero, ours has max |g| %g", name, maxAbs)
		case den > 0 && math.Sqrt(num/den) > 1e-3:
			t.Errorf("%s: relative L2 error %.3g", name, math.Sqrt(num/den))
		}
	}
}

func TestGradUsage(t *testing.T) {
	for _, args := range [][]string{
		{"grad", "--ids", "1,2"},
		{"grad", "--output", "x.safetensors"},
		{"grad", "--ids", "1", "--output", "x.safetensors"},
	} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if _, stderr, code := run(t, "grad", "--help"); code != 0 || !strings.Contains(stderr, "recompute") {
		t.Errorf("grad --help: exit %d, %q", code, stderr)
	}
}
