package atomicfile

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRegularFileReplacedAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("new content"))
	// Before Commit the old content is still there.
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("before commit: %q", b)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new content" {
		t.Fatalf("after commit: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("leftover files: %v", ents)
	}
}

func TestAbortLeavesOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	os.WriteFile(p, []byte("old"), 0o644)
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial"))
	f.Abort()
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("after abort: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("leftover files: %v", ents)
	}
}

// TestFullDisk simulates ENOSPC through the write hook: the old file stays
// and the error says what failed.
func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	os.WriteFile(p, []byte("old"), 0o644)
	old := SetWriteHook(func(path string, written int64, n int) error {
		if written+int64(n) > 4 {
			return syscall.ENOSPC
		}
		return nil
	})
	defer func() { SetWriteHook(old) }()
	err := WriteFile(p, []byte("much more than four bytes"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("after a failed write: %q", b)
	}
}

// TestSymlinkKeptTargetWritten: an output that is a link to a regular file
// writes the file and keeps the link.
func TestSymlinkKeptTargetWritten(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.bin")
	os.WriteFile(target, []byte("old"), 0o644)
	link := filepath.Join(dir, "link.bin")
	if err := os.Symlink("real.bin", link); err != nil {
		t.Skip(err)
	}
	if err := WriteFile(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("target: %q", b)
	}
	// A dangling link creates its target.
	dangling := filepath.Join(dir, "dangling.bin")
	os.Symlink("made.bin", dangling)
	if err := WriteFile(dangling, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "made.bin")); string(b) != "x" {
		t.Fatalf("dangling target: %q", b)
	}
	if fi, _ := os.Lstat(dangling); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the dangling link was replaced")
	}
}

// TestDevNullWrittenThrough: /dev/null stays a device.
func TestDevNullWrittenThrough(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null")
	}
	if err := WriteFile("/dev/null", []byte("data")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat("/dev/null")
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is now %v (%v)", fi.Mode(), err)
	}
	// A link to a device is written through too, and stays a link.
	link := filepath.Join(t.TempDir(), "null")
	os.Symlink("/dev/null", link)
	if err := WriteFile(link, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the link to /dev/null was replaced")
	}
}

// TestNamedPipeWrittenThrough: a FIFO receives the data and stays a FIFO.
func TestNamedPipeWrittenThrough(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip(err)
	}
	got := make(chan string, 1)
	go func() {
		r, err := os.Open(p)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(r)
		r.Close()
		got <- string(b)
	}()
	if err := WriteFile(p, []byte("through the pipe")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "through the pipe" {
		t.Fatalf("reader got %q", s)
	}
	if fi, _ := os.Lstat(p); fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the pipe is now %v", fi.Mode())
	}
}

// TestRefused: folders and sockets are refused, named in the error, and
// left in place.
func TestRefused(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if err := WriteFile(sub, []byte("x")); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a folder") || !strings.Contains(err.Error(), sub) {
		t.Errorf("folder: %v", err)
	}
	if fi, _ := os.Stat(sub); !fi.IsDir() {
		t.Error("the folder was replaced")
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skip(err)
	}
	defer l.Close()
	if err := WriteFile(sock, []byte("x")); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a socket") {
		t.Errorf("socket: %v", err)
	}
	if fi, _ := os.Lstat(sock); fi.Mode()&os.ModeSocket == 0 {
		t.Error("the socket was replaced")
	}
	// A link to a folder is refused too.
	link := filepath.Join(dir, "tosub")
	os.Symlink(sub, link)
	if err := WriteFile(link, []byte("x")); !errors.Is(err, ErrNotRegular) {
		t.Errorf("link to a folder: %v", err)
	}
}
