package safetensors

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "write the bad-file table and sample files to testdata/fuzz/FuzzOpenBytes")

// TestUpdateCorpus writes the seed corpus of FuzzOpenBytes: every bad file
// of the table and a valid file of every dtype. Run with -update-corpus.
func TestUpdateCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpenBytes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(data []byte) {
		name := fmt.Sprintf("seed-%x", sha256.Sum256(data))[:21]
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range badFiles {
		write(tt.file)
	}
	all, err := Marshal(testTensors(t), map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	write(all)
	for _, tensor := range testTensors(t) {
		b, err := Marshal([]Tensor{tensor}, nil)
		if err != nil {
			t.Fatal(err)
		}
		write(b)
	}
}
