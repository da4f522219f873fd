package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// TestRoutingCommand runs jamba routing on the demo model over Go text:
// one report line per MoE layer (the odd layers), each expert's share of
// the selections summing to 1, entropies within [0, log E], and errors for
// a model without experts and for a missing input.
func TestRoutingCommand(t *testing.T) {
	text, err := os.ReadFile(testutil.Fixture(t, "corpus/gostd_val.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "go.txt")
	os.WriteFile(f, text[:20000], 0o644)
	stdout, stderr, code := run(t, "routing", "--file", f, "--context", "128", "--max-tokens", "1000", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep routingReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if rep.Tokens != 1000 || rep.Experts != 4 || rep.TopK != 2 || len(rep.Layers) != 4 {
		t.Fatalf("report header: %+v", rep)
	}
	for i, l := range rep.Layers {
		if l.Layer != 2*i+1 {
			t.Errorf("layer %d reported as %d", 2*i+1, l.Layer)
		}
		var sum float64
		for _, v := range l.Load {
			sum += v
		}
		if math.Abs(sum-1) > 1e-9 || l.Entropy < 0 || l.Entropy > math.Log(4)+1e-9 || l.CV < 0 {
			t.Errorf("layer %d: %+v", l.Layer, l)
		}
	}
	if !(rep.Aux > 1.5 && rep.Aux < 4) {
		t.Errorf("pooled aux %v for top-2 over 4 experts (2 at an even load)", rep.Aux)
	}
	dense := testutil.Fixture(t, "models/tiny-dense")
	if _, stderr, code := run(t, "routing", "--model", dense, "--ids", "1,2,3"); code == 0 || !strings.Contains(stderr, "no MoE layer") {
		t.Errorf("dense model: exit %d, %q", code, stderr)
	}
	if _, stderr, code := run(t, "routing"); code == 0 || !strings.Contains(stderr, "--file or --ids") {
		t.Errorf("no input: exit %d, %q", code, stderr)
	}
}
