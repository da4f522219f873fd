package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jamba-go/jamba/safetensors"
)

// TestIDsEmptyEntry: "1,,2" is a typo, not two ids.
func TestIDsEmptyEntry(t *testing.T) {
	for _, s := range []string{"1,,2", ",1", "1,", " , "} {
		if ids, err := parseIDs(s); err == nil {
			t.Errorf("parseIDs(%q) = %v, want an error", s, ids)
		}
	}
	if ids, err := parseIDs(" 1, 2 "); err != nil || len(ids) != 2 {
		t.Errorf("parseIDs(\" 1, 2 \") = %v, %v", ids, err)
	}
}

// TestOutputNotReplaced: --output naming a link, a named pipe, a device or
// a folder is never replaced by a regular file.
func TestOutputNotReplaced(t *testing.T) {
	dir := t.TempDir()
	// A link to a file: the file gets the logits, the link stays.
	real := filepath.Join(dir, "real.safetensors")
	os.WriteFile(real, nil, 0o644)
	link := filepath.Join(dir, "link.safetensors")
	os.Symlink(real, link)
	if _, stderr, code := run(t, "forward", "--ids", "1,2", "--output", link); code != 0 {
		t.Fatalf("forward to a link: %s", stderr)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if f, err := safetensors.Open(real); err != nil {
		t.Errorf("the link's target: %v", err)
	} else {
		f.Close()
	}

	// /dev/null stays a device (as root, rename would replace it).
	if _, stderr, code := run(t, "forward", "--ids", "1,2", "--output", os.DevNull); code != 0 {
		t.Errorf("forward to /dev/null: %s", stderr)
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is now %v", fi.Mode())
	}

	// A named pipe receives the file.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- len(b)
	}()
	if _, stderr, code := run(t, "forward", "--ids", "1,2", "--output", fifo); code != 0 {
		t.Errorf("forward to a pipe: %s", stderr)
	}
	if n := <-got; n < 100 {
		t.Errorf("the pipe's reader got %d bytes", n)
	}
	if fi, _ := os.Lstat(fifo); fi.Mode()&os.ModeNamedPipe == 0 {
		t.Error("the pipe was replaced")
	}

	// A folder is refused with its name.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	_, stderr, code := run(t, "grad", "--ids", "1,2,3", "--output", sub)
	if code == 0 || !strings.Contains(stderr, sub) || !strings.Contains(stderr, "a folder") {
		t.Errorf("grad to a folder: exit %d, %s", code, stderr)
	}
	if fi, _ := os.Stat(sub); !fi.IsDir() {
		t.Error("the folder was replaced")
	}
}
