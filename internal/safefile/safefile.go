// Package safefile reads small files that come from outside (config.json,
// tokenizer.json, key files) with a bound: a path that names a device, a
// pipe or a folder (a link to /dev/zero, say) is refused before it is
// read, and so is a file larger than the limit for its kind, so that a bad
// path never makes memory grow without bound.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Limits for the files a checkpoint folder holds. The largest tokenizer.json
// of released models is about 35 MB; configs are a few KB.
const (
	MaxConfig    = 16 << 20  // config.json, generation_config.json, tokenizer_config.json, templates
	MaxTokenizer = 256 << 20 // tokenizer.json
)

// ErrTooLarge and ErrNotRegular are wrapped by ReadFile's errors.
var (
	ErrTooLarge   = errors.New("file too large")
	ErrNotRegular = errors.New("not a regular file")
)

// ReadFile reads the regular file at path (links followed) if it holds at
// most limit bytes. Errors name the path, and for a refusal the size or
// kind and the limit.
func ReadFile(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := check(path, fi, limit); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may have been swapped since the Stat: check what was opened.
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := check(path, fi, limit); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: grew past %d bytes while being read: %w", path, limit, ErrTooLarge)
	}
	return data, nil
}

func check(path string, fi fs.FileInfo, limit int64) error {
	if !fi.Mode().IsRegular() {
		what := "not a regular file"
		switch m := fi.Mode(); {
		case m.IsDir():
			what = "a folder"
		case m&fs.ModeCharDevice != 0:
			what = "a character device"
		case m&fs.ModeDevice != 0:
			what = "a block device"
		case m&fs.ModeNamedPipe != 0:
			what = "a named pipe"
		case m&fs.ModeSocket != 0:
			what = "a socket"
		}
		return fmt.Errorf("%s is %s, not a regular file: %w", path, what, ErrNotRegular)
	}
	if fi.Size() > limit {
		return fmt.Errorf("%s holds %d bytes, more than the %d allowed for it: %w", path, fi.Size(), limit, ErrTooLarge)
	}
	return nil
}
