package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStateDirSurvivesRestart: a request's state written by Close is read
// back by the next engine on the same folder, and a request that
// continues it reports every earlier token as cached and gives the same
// bits as an engine that computes the whole prompt. A corrupted or
// truncated file is refused, and the request computes its prompt.
func TestStateDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{MaxBatch: 2, StepTokens: 16, StateDir: dir}
	first, err := New(demoModelFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := prompt(3, 40)
	r1 := runLogprobs(t, first, p, 8)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "slot-*.jstate"))
	if len(files) != 1 {
		t.Fatalf("state files after Close: %v", files)
	}

	// The next turn: the earlier prompt, its answer, and more.
	next := append(append(append([]int(nil), p...), r1.ids...), prompt(4, 12)[1:]...)
	fresh := newEngine(t, Config{MaxBatch: 2, StepTokens: 16, NoPrefixReuse: true})
	want := runLogprobs(t, fresh, next, 8)

	second := newEngine(t, cfg)
	if loaded, refused := second.LoadedStates(); loaded != 1 || refused != 0 {
		t.Fatalf("loaded %d states, refused %d", loaded, refused)
	}
	got := runLogprobs(t, second, next, 8)
	if wantCached := len(p) + len(r1.ids) - 1; got.cached != wantCached {
		t.Errorf("after the restart %d prompt tokens were cached, want %d (the earlier prompt and the answer tokens fed)", got.cached, wantCached)
	}
	sameResult(t, "continued after a restart", got, want)
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}

	files, _ = filepath.Glob(filepath.Join(dir, "slot-*.jstate"))
	if len(files) == 0 {
		t.Fatal("no state file after the second engine closed")
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"corrupted": append(append(append([]byte(nil), data[:len(data)/2]...), data[len(data)/2]^1), data[len(data)/2+1:]...),
		"truncated": data[:len(data)-7],
	} {
		for _, f := range files {
			os.Remove(f)
		}
		if err := os.WriteFile(files[0], bad, 0o644); err != nil {
			t.Fatal(err)
		}
		e := newEngine(t, cfg)
		if loaded, refused := e.LoadedStates(); loaded != 0 || refused != 1 {
			t.Fatalf("%s file: loaded %d, refused %d", name, loaded, refused)
		}
		if r := runLogprobs(t, e, next, 8); r.cached != 0 {
			t.Fatalf("%s file: %d tokens cached", name, r.cached)
		} else {
			sameResult(t, name+" file", r, want)
		}
		e.Close()
	}
}
