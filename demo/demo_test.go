package demo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
)

// TestDemoBeatsBaseline checks that the demo model trained by this project
// (demo/, recipe in docs/TRAINING.md) predicts held-out Go code better than
// hf-gostd-13m: the mean loss over the 64 windows of 256 tokens of
// gostd_val.txt (the standard library's net/http, never trained on).
func TestDemoBeatsBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("two models over 16384 tokens")
	}
	ids := testutil.ReadIDs(t, "tokenizers/gostd/gostd_val.ids.int32")
	m, err := Load(model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Loss float64 `json:"val_loss_fp32_gpu_64x256"`
	}
	data, err := os.ReadFile(filepath.Join(testutil.Fixture(t, "models/hf-gostd-13m"), "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ref); err != nil || ref.Loss == 0 {
		t.Fatalf("reference.json: %v", err)
	}
	bl := ref.Loss // reproduced by TestGostdWindows
	dl, _, err := m.LossOverWindows(ids, 256, 16384, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out loss: demo %.4f, hf-gostd-13m %.4f nats/token", dl, bl)
	if dl >= bl {
		t.Errorf("demo model loss %.4f is not below hf-gostd-13m's %.4f", dl, bl)
	}
}
