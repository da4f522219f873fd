package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/safetensors"
)

// TestLoRACommands trains an adapter with `jamba train --lora-rank` (dropout
// on, experts and routers adapted) in one run and as 3 steps + --resume,
// and requires the same adapter bytes; then `jamba forward --lora` must give
// exactly the logits of the checkpoint `jamba merge` writes, and differ from
// the base's; usage errors are refused.
func TestLoRACommands(t *testing.T) {
	model, data, val, tok := trainFixture(t)
	common := []string{"train", "--tokenizer", tok, "--data", data, "--val", val, "--seq", "32", "--batch", "2",
		"--steps", "6", "--warmup", "2", "--eval-every", "3", "--eval-tokens", "256", "--save-every", "0", "--quiet", "--lr", "1e-2",
		"--lora-rank", "4", "--lora-alpha", "8", "--lora-dropout", "0.1", "--lora-targets", "in_proj,x_proj,dt_proj,out_proj,q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,router", "--workers", "2"}
	whole := filepath.Join(t.TempDir(), "whole")
	if _, stderr, code := run(t, append(common, "--model", model, "--output", whole)...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	legs := filepath.Join(t.TempDir(), "legs")
	if _, stderr, code := run(t, append(common, "--model", model, "--output", legs, "--stop-step", "3")...); code != 0 {
		t.Fatalf("first leg: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, "train", "--resume", legs, "--data", data, "--val", val, "--quiet"); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, stderr)
	}
	a := allTensorBytes(t, filepath.Join(whole, "adapter_model.safetensors"))
	b := allTensorBytes(t, filepath.Join(legs, "adapter_model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the resumed adapter differs from the whole run's (%d and %d bytes)", len(a), len(b))
	}
	if _, err := os.Stat(filepath.Join(whole, "model.safetensors")); err == nil {
		t.Errorf("a LoRA run wrote model.safetensors")
	}

	dir := t.TempDir()
	ids := "5,17,300,2,9,8,7,6,40,41"
	merged := filepath.Join(dir, "merged")
	if _, stderr, code := run(t, "merge", "--model", model, "--lora", whole, "--output", merged); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	for _, c := range [][]string{
		{"--model", model, "--lora", whole, "--output", filepath.Join(dir, "lora.safetensors")},
		{"--model", merged, "--output", filepath.Join(dir, "merged.safetensors")},
		{"--model", model, "--output", filepath.Join(dir, "base.safetensors")},
	} {
		if _, stderr, code := run(t, append([]string{"forward", "--ids", ids}, c...)...); code != 0 {
			t.Fatalf("forward %v: exit %d: %s", c, code, stderr)
		}
	}
	l := tensorBytes(t, filepath.Join(dir, "lora.safetensors"), "logits")
	if m := tensorBytes(t, filepath.Join(dir, "merged.safetensors"), "logits"); !bytes.Equal(l, m) {
		t.Errorf("forward --lora and the merged checkpoint give different logits")
	}
	if bytes.Equal(l, tensorBytes(t, filepath.Join(dir, "base.safetensors"), "logits")) {
		t.Errorf("the adapter does not change the logits")
	}

	for _, bad := range [][]string{
		{"train", "--model", model, "--tokenizer", tok, "--data", data, "--output", filepath.Join(dir, "x"), "--lora-alpha", "4"},
		{"train", "--model", model, "--tokenizer", tok, "--data", data, "--output", filepath.Join(dir, "x"), "--lora-rank", "2", "--lora-targets", "lm_head"},
		{"train", "--model", model, "--tokenizer", tok, "--data", data, "--output", filepath.Join(dir, "x"), "--lora-rank", "2", "--lora-targets", "experts", "--lora-dropout", "0.1"},
		{"train", "--resume", legs, "--data", data, "--lora-rank", "8"},
		{"merge", "--model", model, "--output", filepath.Join(dir, "y")},
		{"forward", "--model", model, "--lora", whole, "--lora", whole, "--ids", ids, "--output", filepath.Join(dir, "z.safetensors")},
	} {
		_, stderr, code := run(t, bad...)
		if code != 2 || !strings.Contains(stderr, "lora") {
			t.Errorf("%v: exit %d, %s", bad, code, stderr)
		}
	}
	// An adapter of another model is refused, naming the flag and the tensor.
	_, stderr, code := run(t, "forward", "--lora", whole, "--ids", ids, "--output", filepath.Join(dir, "w.safetensors"))
	if code == 0 || !strings.Contains(stderr, "lora_") || !strings.Contains(stderr, "--lora "+whole) {
		t.Errorf("an adapter of another model: exit %d, %s", code, stderr)
	}
	// A missing adapter folder is named with its flag, by every command.
	missing := filepath.Join(dir, "no-adapter")
	for _, bad := range [][]string{
		{"merge", "--lora", missing, "--output", filepath.Join(dir, "m")},
		{"forward", "--lora", missing, "--ids", ids, "--output", filepath.Join(dir, "w.safetensors")},
	} {
		if _, stderr, code := run(t, bad...); code == 0 || !strings.Contains(stderr, "--lora "+missing) {
			t.Errorf("%v: exit %d, %s", bad, code, stderr)
		}
	}
}

// allTensorBytes is the data of every tensor of a safetensors file, in its
// order.
func allTensorBytes(t *testing.T, path string) []byte {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	names := f.Names()
	f.Close()
	return tensorBytes(t, path, names...)
}
