package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/hub/hubtest"
	"github.com/jamba-go/jamba/internal/testutil"
)

// demoHub serves the demo checkpoint as the Hub repository jamba-test/gostd
// and points HF_ENDPOINT and HF_HUB_CACHE at it and a fresh cache.
func demoHub(t *testing.T) (*hubtest.Hub, string) {
	t.Helper()
	repo := &hubtest.Repo{Commit: "89abcdef0123456789abcdef0123456789abcdef", Files: map[string][]byte{}, LFS: map[string]bool{"model.safetensors": true}}
	for _, name := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "demo", "jamba-gostd-4m", name))
		if err != nil {
			t.Fatal(err)
		}
		repo.Files[name] = data
	}
	repo.Files["README.md"] = []byte("# gostd\n")
	h := hubtest.New(t)
	h.AddRepo("jamba-test/gostd", repo)
	cache := t.TempDir()
	t.Setenv("HF_ENDPOINT", h.URL())
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", filepath.Join(cache, "no-token"))
	t.Setenv("HF_HUB_OFFLINE", "")
	forgetResolved(t)
	return h, cache
}

func forgetResolved(t *testing.T) {
	resolvedMu.Lock()
	clear(resolved)
	resolvedMu.Unlock()
	t.Cleanup(func() {
		resolvedMu.Lock()
		clear(resolved)
		resolvedMu.Unlock()
	})
}

// TestRunFromHub runs a model by its Hub name against a fake hub: the
// download is verified and cached, the output is the embedded demo
// model's (the same checkpoint), a second run asks only for the revision,
// and an offline run asks nothing.
func TestRunFromHub(t *testing.T) {
	h, cache := demoHub(t)
	flags := []string{"run", "--temperature", "0", "--max-tokens", "12"}
	want, stderr, code := run(t, append(flags, "func main() {")...)
	if code != 0 {
		t.Fatalf("demo run: %s", stderr)
	}
	got, stderr, code := run(t, append(flags, "jamba-test/gostd", "func main() {")...)
	if code != 0 {
		t.Fatalf("run from the hub: %s", stderr)
	}
	if got != want || got == "" {
		t.Errorf("run jamba-test/gostd printed %q, the demo model %q", got, want)
	}
	if !strings.Contains(stderr, "jamba-test/gostd: model.safetensors") {
		t.Errorf("no progress on stderr: %q", stderr)
	}
	snap := filepath.Join(cache, "models--jamba-test--gostd", "snapshots", "89abcdef0123456789abcdef0123456789abcdef")
	if _, err := os.Stat(filepath.Join(snap, "README.md")); err == nil {
		t.Error("README.md was downloaded")
	}

	forgetResolved(t)
	h.ResetLog()
	if got2, stderr, code := run(t, append(flags, "--model", "jamba-test/gostd", "func main() {")...); code != 0 || got2 != want {
		t.Fatalf("second run (--model): exit %d, %q, %s", code, got2, stderr)
	}
	if reqs := h.Requests(); !slices.Equal(reqs, []string{"hub GET /api/models/jamba-test/gostd/revision/main"}) {
		t.Errorf("second run made requests %q, want only the revision check", reqs)
	}

	forgetResolved(t)
	h.ResetLog()
	t.Setenv("HF_HUB_OFFLINE", "1")
	if got3, stderr, code := run(t, append(flags, "jamba-test/gostd", "func main() {")...); code != 0 || got3 != want {
		t.Fatalf("offline run: exit %d, %q, %s", code, got3, stderr)
	}
	if reqs := h.Requests(); len(reqs) != 0 {
		t.Errorf("offline run made requests %q", reqs)
	}
}

func TestPullCommand(t *testing.T) {
	h, cache := demoHub(t)
	out, stderr, code := run(t, "pull", "jamba-test/gostd")
	want := filepath.Join(cache, "models--jamba-test--gostd", "snapshots", "89abcdef0123456789abcdef0123456789abcdef")
	if code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("pull: exit %d, stdout %q, stderr %s", code, out, stderr)
	}
	_, stderr, code = run(t, "pull", "jamba-test/missing")
	if code != 1 || !strings.Contains(stderr, "no model repository jamba-test/missing at "+h.URL()) {
		t.Errorf("pull of a missing repository: exit %d, %s", code, stderr)
	}
	if _, stderr, code = run(t, "pull", "not a name"); code != 2 {
		t.Errorf("pull of a bad name: exit %d, %s", code, stderr)
	}
	// inspect resolves --model too.
	out, stderr, code = run(t, "inspect", "--model", "jamba-test/gostd")
	if code != 0 || !strings.Contains(out, "layers") {
		t.Errorf("inspect --model org/name: exit %d, %s %s", code, out, stderr)
	}
}

// TestRunGGUFFromHub runs a GGUF repository's file by its quantization tag
// (org/name:Q8_0, as llama.cpp's -hf takes it) against a fake hub, and
// compares the output with the same file run from its local path.
func TestRunGGUFFromHub(t *testing.T) {
	src := testutil.Shared(t, "gguf/gostd-13m-q8_0.gguf")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := demoHub(t)
	h.AddRepo("jamba-test/gostd-13m-GGUF", &hubtest.Repo{Commit: "0123456789abcdef0123456789abcdef01234567",
		Files: map[string][]byte{"gostd-13m-q8_0.gguf": data, "README.md": []byte("x")},
		LFS:   map[string]bool{"gostd-13m-q8_0.gguf": true}})
	flags := []string{"run", "--temperature", "0", "--max-tokens", "8"}
	want, stderr, code := run(t, append(flags, "--model", src, "func main() {")...)
	if code != 0 {
		t.Fatalf("local GGUF: %s", stderr)
	}
	got, stderr, code := run(t, append(flags, "jamba-test/gostd-13m-GGUF:Q8_0", "func main() {")...)
	if code != 0 || got != want || got == "" {
		t.Fatalf("GGUF from the hub: exit %d, %q, local %q\n%s", code, got, want, stderr)
	}
}
