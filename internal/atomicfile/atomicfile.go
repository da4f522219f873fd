// Package atomicfile writes output files so that a crash, a full disk or a
// kill never leaves a partial file where a complete one is expected, and so
// that an output path naming something other than a regular file is never
// replaced by one.
//
// What a path may name, and what happens to it:
//
//   - nothing, or a regular file: the data goes to a temporary file in the
//     same folder, which Commit syncs and renames over the path (then syncs
//     the folder), so the path holds either the old or the new content;
//   - a symbolic link to a regular file (or to nothing, in an existing
//     folder): the link's target is written as above, and the link stays a
//     link;
//   - a character device (/dev/null, /dev/stdout on a terminal) or a named
//     pipe (/dev/stdout in a shell pipeline, a FIFO): the data is written
//     through to it, which is what naming one means;
//   - anything else (a folder, a block device, a socket): refused with an
//     error that names the path and what it is.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// File is an output being written. Write to it, then Commit; Abort (or a
// failed Commit) removes the temporary file and leaves the path as it was.
type File struct {
	path    string   // the path given to Create
	target  string   // where the data ends up (path, or the link's target)
	f       *os.File // the temporary file, or the device / pipe itself
	through bool     // writing straight to a device or pipe
	done    bool
}

// writeHook, when set (by tests), is called before every Write with the
// bytes written so far and the size of the write; an error it returns is
// the write's error (a full disk, say).
var writeHook func(path string, written int64, n int) error

// SetWriteHook installs a hook called before every write to a temporary
// file (nil removes it) and returns the previous one. It exists for tests
// that simulate a full disk or a failing device.
func SetWriteHook(h func(path string, written int64, n int) error) func(path string, written int64, n int) error {
	old := writeHook
	writeHook = h
	return old
}

// Kind describes what path names for an error message: "a folder", "a
// block device", "a socket", ... ("" when it does not exist).
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return "a block device"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsRegular():
		return "a regular file"
	}
	return "not a regular file"
}

// ErrNotRegular is wrapped by the error for a path that names something
// that may be neither replaced nor written through.
var ErrNotRegular = errors.New("not a regular file")

// Resolve returns where an output to path goes and whether it is written
// through (a device or a pipe), or an error for a path that may not be
// replaced.
func Resolve(path string) (target string, through bool, err error) {
	if path == "" {
		return "", false, errors.New("empty output path")
	}
	li, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, false, nil
	}
	if err != nil {
		return "", false, err
	}
	target = path
	mode := li.Mode()
	if mode&fs.ModeSymlink != 0 {
		si, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// A dangling link: create its target, if its folder exists.
			dest, rerr := readLinkAbs(path)
			if rerr != nil {
				return "", false, rerr
			}
			if _, derr := os.Stat(filepath.Dir(dest)); derr != nil {
				return "", false, fmt.Errorf("%s: a symbolic link to %s, whose folder cannot be used: %w", path, dest, derr)
			}
			return dest, false, nil
		case err != nil:
			return "", false, err
		}
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return "", false, err
		}
		mode = si.Mode()
	}
	switch {
	case mode.IsRegular():
		return target, false, nil
	case mode&fs.ModeCharDevice != 0, mode&fs.ModeNamedPipe != 0:
		return path, true, nil
	}
	return "", false, fmt.Errorf("%s is %s: %w; refusing to replace it (give the path of a file)", path, kind(mode), ErrNotRegular)
}

// readLinkAbs returns the target of the link at path, absolute or relative
// to the link's folder.
func readLinkAbs(path string) (string, error) {
	dest, err := os.Readlink(path)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(dest) {
		dest = filepath.Join(filepath.Dir(path), dest)
	}
	return dest, nil
}

// Create starts an output to path (see the package comment).
func Create(path string) (*File, error) {
	target, through, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	if through {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		return &File{path: path, target: target, f: f, through: true}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp*")
	if err != nil {
		return nil, err
	}
	return &File{path: path, target: target, f: f}, nil
}

// Name is the path given to Create.
func (f *File) Name() string { return f.path }

// Write writes to the temporary file (or through to the device or pipe).
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("%s: %w", f.path, os.ErrClosed)
	}
	if writeHook != nil && !f.through {
		st, _ := f.f.Stat()
		var size int64
		if st != nil {
			size = st.Size()
		}
		if err := writeHook(f.target, size, len(p)); err != nil {
			return 0, &fs.PathError{Op: "write", Path: f.f.Name(), Err: err}
		}
	}
	return f.f.Write(p)
}

// Commit syncs the data and puts it in place: renames the temporary file
// over the target and syncs the folder, or closes the device or pipe.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: %w", f.path, os.ErrClosed)
	}
	f.done = true
	if f.through {
		return f.f.Close()
	}
	tmp := f.f.Name()
	err := f.f.Sync()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, f.target)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(f.target))
}

// Abort discards what was written; the path is left as it was. It is a
// no-op after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.f.Close()
	if !f.through {
		os.Remove(f.f.Name())
	}
}

// WriteFile writes data to path as Create, Write and Commit do.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// Copy writes what r yields to path as WriteFile does.
func Copy(path string, r io.Reader) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// SyncDir makes the renames and removals in dir durable. Systems that
// cannot sync a folder (EINVAL) are not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}
