package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/safetensors"
)

// ckptTrainer is a tiny run that saves nothing by itself.
func ckptTrainer(t *testing.T) (*Trainer, []int32) { return ckptTrainerLoRA(t, false) }

// ckptTrainerLoRA is ckptTrainer, training a LoRA adapter (dropout on) over
// a base saved in a temporary folder when lora is set.
func ckptTrainerLoRA(t *testing.T, lora bool) (*Trainer, []int32) {
	t.Helper()
	cfg := tinyConfig(t, nil)
	data := patternTokens(300, cfg.VocabSize, 1)
	o := trainOpts()
	o.Steps, o.EvalEvery, o.SaveEvery = 6, 0, 0
	if lora {
		base := t.TempDir()
		if err := InitParams(cfg, 3).Save(base, safetensors.F32); err != nil {
			t.Fatal(err)
		}
		o.LoRA = &LoRAOptions{Rank: 2, Alpha: 4, Dropout: 0.1, Targets: []string{"in_proj", "q_proj", "router"}, Base: base}
	}
	tr, err := NewTrainer(InitParams(cfg, 3), data, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	return tr, data
}

func step(t *testing.T, tr *Trainer) {
	t.Helper()
	m, err := tr.Step()
	if err != nil {
		t.Fatal(err)
	}
	tr.Metrics = append(tr.Metrics, m)
}

// snapshot is the state a resume must restore exactly.
type snapshot struct {
	step       int
	params     []float32
	m, v       []float32
	epoch, pos int
}

func snap(tr *Trainer) snapshot {
	return snapshot{tr.Opt.Step, slices.Clone(tr.trained().Data), slices.Clone(tr.Opt.M), slices.Clone(tr.Opt.V), tr.Data.Epoch, tr.Data.Pos}
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func (s snapshot) matches(tr *Trainer) bool {
	return s.step == tr.Opt.Step && s.epoch == tr.Data.Epoch && s.pos == tr.Data.Pos &&
		sameBits(s.params, tr.trained().Data) && sameBits(s.m, tr.Opt.M) && sameBits(s.v, tr.Opt.V)
}

var errCrash = errors.New("simulated crash")

// TestCheckpointCutAtEveryPoint stops the save of step 2 at each of its
// points, as a kill there would (nothing cleaned up), over a folder that
// holds the save of step 1. A resume must give exactly step 1 or exactly
// step 2, never a mix; where the top folder holds files of both steps, the
// notes name the step of each. The same for a LoRA run, whose save is the
// adapter's PEFT files with the optimizer state.
func TestCheckpointCutAtEveryPoint(t *testing.T) {
	points := []string{"files written", "staged", "renamed", "manifest"}
	for i := range 6 { // the save has 5 files (no tokenizer here): publish points 0..4
		points = append(points, fmt.Sprintf("published %d", i))
	}
	for _, lora := range []bool{false, true} {
		for _, point := range points {
			name := point
			if lora {
				name = "lora/" + point
			}
			t.Run(name, func(t *testing.T) { testCheckpointCut(t, point, lora) })
		}
	}
}

func testCheckpointCut(t *testing.T, point string, lora bool) {
	tr, data := ckptTrainerLoRA(t, lora)
	dir := t.TempDir()
	step(t, tr)
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	s1 := snap(tr)
	step(t, tr)
	s2 := snap(tr)
	hit := false
	saveHook = func(p string) error {
		if p == point {
			hit = true
			return errCrash
		}
		return nil
	}
	err := tr.Save(dir)
	saveHook = nil
	if !hit {
		if err != nil {
			t.Fatal(err) // the save has fewer files: it completes
		}
	} else if !errors.Is(err, errCrash) {
		t.Fatalf("save: %v, want the simulated crash", err)
	}
	r, err := Resume(dir, data, nil, nil)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	switch {
	case s2.matches(r):
	case s1.matches(r):
		if hit && (slices.Contains([]string{"renamed", "manifest"}, point) || strings.HasPrefix(point, "published")) {
			t.Errorf("resumed step 1 though step 2 was complete in checkpoints/ (%v)", r.Notes)
		}
	default:
		t.Fatalf("resumed state is neither step 1 nor step 2 (step %d)", r.Opt.Step)
	}
	// The top of the folder is a sound checkpoint of the resumed
	// step again, even before the run saves.
	if m, err := verify(dir); err != nil || m.Step != r.Opt.Step {
		t.Errorf("after the resume the top is not the resumed save: %v", err)
	}
	if point == "published 3" && !lora { // the model (first file) is of step 2, the optimizer state of step 1
		joined := strings.Join(r.Notes, "\n")
		if !strings.Contains(joined, "model.safetensors is from step 2, not the one saved at step 1") {
			t.Errorf("notes do not name the model's step: %s", joined)
		}
	}
}

// TestCheckpointMixedRefused: a top folder of two saves with no complete
// save to fall back to is refused, naming the step of each file.
func TestCheckpointMixedRefused(t *testing.T) {
	tr, data := ckptTrainer(t)
	dir := t.TempDir()
	step(t, tr)
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	step(t, tr)
	saveHook = func(p string) error {
		if p == "published 3" { // config.json, loss.png, metrics.csv and model.safetensors of step 2
			return errCrash
		}
		return nil
	}
	tr.Save(dir)
	saveHook = nil
	if err := os.RemoveAll(filepath.Join(dir, checkpointsDir)); err != nil {
		t.Fatal(err)
	}
	_, err := Resume(dir, data, nil, nil)
	if err == nil {
		t.Fatal("a folder of two saves was resumed")
	}
	for _, want := range []string{"manifest is of step 1", "is from step 2", "no complete checkpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestCheckpointLegacyMixedRefused: a folder without manifest (as written
// before manifests) whose model and optimizer state are of different
// steps is refused.
func TestCheckpointLegacyMixedRefused(t *testing.T) {
	tr, data := ckptTrainer(t)
	dir := t.TempDir()
	step(t, tr)
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	opt, _ := os.ReadFile(filepath.Join(dir, optimizerFile))
	step(t, tr)
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, checkpointsDir))
	os.Remove(filepath.Join(dir, manifestFile))
	os.Remove(filepath.Join(dir, optimizerFile))
	os.WriteFile(filepath.Join(dir, optimizerFile), opt, 0o644)
	_, err := Resume(dir, data, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "model.safetensors is from step 2, optimizer.safetensors from step 1") {
		t.Fatalf("err = %v", err)
	}
}

// TestCheckpointFullDisk: a save that fails for want of space leaves the
// previous save whole; the resume continues from it exactly.
func TestCheckpointFullDisk(t *testing.T) {
	tr, data := ckptTrainer(t)
	dir := t.TempDir()
	step(t, tr)
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	s1 := snap(tr)
	step(t, tr)
	old := atomicfile.SetWriteHook(func(path string, written int64, n int) error {
		if filepath.Base(path) == optimizerFile && written+int64(n) > 4096 {
			return syscall.ENOSPC
		}
		return nil
	})
	err := tr.Save(dir)
	atomicfile.SetWriteHook(old)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("save on a full disk: %v", err)
	}
	r, err := Resume(dir, data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s1.matches(r) || len(r.Notes) != 0 {
		t.Fatalf("resumed step %d (notes %v), want step 1 exactly", r.Opt.Step, r.Notes)
	}
}

// TestCheckpointKeepsTwo: after four saves the folder holds the last two
// and the top is the newest.
func TestCheckpointKeepsTwo(t *testing.T) {
	tr, data := ckptTrainer(t)
	dir := t.TempDir()
	for range 4 {
		step(t, tr)
		if err := tr.Save(dir); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, checkpointsDir))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"step-00000003", "step-00000004"}) {
		t.Errorf("checkpoints/: %v", names)
	}
	s4 := snap(tr)
	r, err := Resume(dir, data, nil, nil)
	if err != nil || !s4.matches(r) {
		t.Fatalf("resume: %v", err)
	}
	// The top is a checkpoint of its own: the newest save's files, linked.
	a, _ := os.Stat(filepath.Join(dir, "model.safetensors"))
	b, _ := os.Stat(filepath.Join(dir, checkpointsDir, "step-00000004", "model.safetensors"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("the top model is not the newest save's")
	}
}

// rewriteState edits the training state of dir's optimizer.safetensors
// and its manifest, so that only the state's validation can catch it.
func rewriteState(t *testing.T, dir string, edit func(st map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, optimizerFile)
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	json.Unmarshal([]byte(f.Metadata()["jamba_train_state"]), &st)
	edit(st)
	js, _ := json.Marshal(st)
	var ts []safetensors.Tensor
	for _, name := range []string{"m", "v"} {
		tt, _ := f.Tensor(name)
		v, _ := tt.Float32()
		data, _ := safetensors.EncodeFloat32(safetensors.F32, v)
		ts = append(ts, safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: []int{len(v)}}, Data: data})
	}
	f.Close()
	os.Remove(p) // a new inode: the saves in checkpoints/ keep theirs
	if err := safetensors.WriteFile(p, ts, map[string]string{"format": "pt", "jamba_train_state": string(js)}); err != nil {
		t.Fatal(err)
	}
	m, err := readManifest(filepath.Join(dir, manifestFile))
	if err != nil {
		t.Fatal(err)
	}
	nm, err := makeManifest(dir, m.Step, m.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(filepath.Join(dir, manifestFile), nm); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, checkpointsDir))
}

// TestResumeValidatesState: every field of a corrupted training state is
// refused by name, without a panic.
func TestResumeValidatesState(t *testing.T) {
	cases := []struct {
		name string
		edit func(st map[string]any)
		want string
	}{
		{"negative pos", func(st map[string]any) { st["pos"] = -1 }, "pos -1"},
		{"huge pos", func(st map[string]any) { st["pos"] = 1 << 50 }, "pos"},
		{"pos past the epoch", func(st map[string]any) { st["pos"] = 20; st["step"] = 6 }, "pos 20 past the"},
		{"negative step", func(st map[string]any) { st["step"] = -3 }, "step -3"},
		{"step past steps", func(st map[string]any) { st["step"] = 7 }, "step 7 outside"},
		{"negative epoch", func(st map[string]any) { st["epoch"] = -1 }, "epoch -1"},
		{"huge epoch", func(st map[string]any) { st["epoch"] = 1000 }, "epoch 1000 after"},
		{"negative tokens", func(st map[string]any) { st["tokens"] = -5 }, "tokens -5"},
		{"negative elapsed", func(st map[string]any) { st["elapsed_s"] = -1 }, "elapsed_s"},
		{"bad options", func(st map[string]any) { st["options"].(map[string]any)["seq"] = 0 }, "options"},
		{"unknown field", func(st map[string]any) { st["posx"] = 1 }, "unknown field"},
		{"pos as text", func(st map[string]any) { st["pos"] = "3" }, "pos"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, data := ckptTrainer(t)
			step(t, tr)
			dir := t.TempDir()
			if err := tr.Save(dir); err != nil {
				t.Fatal(err)
			}
			rewriteState(t, dir, c.edit)
			_, err := Resume(dir, data, nil, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one with %q", err, c.want)
			}
		})
	}
	// The unedited state resumes (rewriteState itself leaves a sound state).
	tr, data := ckptTrainer(t)
	step(t, tr)
	dir := t.TempDir()
	tr.Save(dir)
	rewriteState(t, dir, func(map[string]any) {})
	if _, err := Resume(dir, data, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// FuzzTrainState: any training state read from a checkpoint is either
// refused or safe to resume from: the loader's position is then within its
// epoch (no index out of range at the next batch).
func FuzzTrainState(f *testing.F) {
	f.Add(`{"options":{"seq":16,"batch":3,"accum":2,"steps":6,"lr":0.003,"min_lr":0.0003,"warmup":2,"weight_decay":0.1,"beta1":0.9,"beta2":0.95,"eps":1e-8,"clip":1,"seed":42,"eval_every":0,"eval_tokens":0,"save_every":0,"recompute":false,"workers":0},"step":1,"epoch":0,"pos":6,"seed":42,"tokens":96,"elapsed_s":0.1,"data_tokens":300}`)
	f.Add(`{"step":-1,"pos":-5}`)
	f.Add(`{"options":{"seq":2,"batch":1,"accum":1,"steps":1,"lr":1,"eps":1},"step":1,"epoch":1,"pos":1,"data_tokens":300}`)
	data := make([]int32, 300)
	f.Fuzz(func(t *testing.T, js string) {
		var st trainState
		dec := json.NewDecoder(strings.NewReader(js))
		dec.DisallowUnknownFields()
		if dec.Decode(&st) != nil || st.validate("optimizer.safetensors", len(data)) != nil {
			return
		}
		ld, err := NewLoader(data, st.Options.Seq, st.Options.Batch, st.Seed)
		if err != nil {
			return
		}
		ld.Epoch, ld.Pos = st.Epoch, st.Pos
		if ld.checkPos() != nil {
			return
		}
		ld.Next()
	})
}

func TestRunFolder(t *testing.T) {
	for in, want := range map[string]string{
		"run":                               "run",
		"run/checkpoints/step-00000004":     "run",
		"/a/run/checkpoints/step-00000004/": "/a/run",
		"run/checkpoints":                   "run/checkpoints",
		"run/other/step-00000004":           "run/other/step-00000004",
	} {
		if got := RunFolder(in); got != want {
			t.Errorf("RunFolder(%q) = %q, want %q", in, got, want)
		}
	}
}
