package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errRetry marks a download that stopped for a reason a retry can cure
// (a cut connection, a short body); the .incomplete file is kept.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

// wrapWriter, when set (by tests), wraps the writer of every download, to
// simulate a full disk.
var wrapWriter func(io.Writer) io.Writer

// fetchBlob makes blobs/ETAG hold the file m describes, downloading it
// into blobs/ETAG.incomplete (resuming what an earlier run left) and
// renaming it once its size and hash are right.
func (c *Client) fetchBlob(ctx context.Context, hc *http.Client, rc repoCache, m fileMeta, pr *progress) error {
	final := rc.blob(m.etag)
	if st, err := os.Stat(final); err == nil && st.Size() == m.size {
		pr.set(m.file, m.size, m.size)
		pr.done(m.file)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(rc.locks, m.etag+".lock"))
	if err != nil {
		return fmt.Errorf("%s: %w", m.file, err)
	}
	defer unlock()
	if st, err := os.Stat(final); err == nil && st.Size() == m.size { // another process finished it
		pr.set(m.file, m.size, m.size)
		pr.done(m.file)
		return nil
	}
	inc := final + ".incomplete"
	retries := c.Retries
	if retries == 0 {
		retries = 5
	} else if retries < 0 {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		err = c.downloadOnce(ctx, hc, inc, m, pr)
		var re errRetry
		if err == nil || !errors.As(err, &re) || attempt >= retries || ctx.Err() != nil {
			break
		}
		pr.note(fmt.Sprintf("%s: %v; resuming", m.file, err))
		select {
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w (the partial download %s is kept; run again to resume)", m.file, err, inc)
	}
	if err := verify(inc, m); err != nil {
		os.Remove(inc)
		return err
	}
	if err := os.Rename(inc, final); err != nil {
		return fmt.Errorf("%s: %w", m.file, err)
	}
	syncDir(filepath.Dir(final))
	pr.done(m.file)
	return nil
}

// downloadOnce continues inc from its current size to m.size with one GET.
func (c *Client) downloadOnce(ctx context.Context, hc *http.Client, inc string, m fileMeta, pr *progress) error {
	f, err := os.OpenFile(inc, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", m.file, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	off := st.Size()
	if off > m.size {
		if err := f.Truncate(0); err != nil {
			return err
		}
		off = 0
	}
	pr.set(m.file, off, m.size)
	if off == m.size {
		return nil
	}
	h := http.Header{"Accept-Encoding": {"identity"}}
	if off > 0 {
		h.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	resp, err := c.follow(ctx, hc, http.MethodGet, m.url, h)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errRetry{err}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			return fmt.Errorf("the server answered range %q to a request from byte %d", resp.Header.Get("Content-Range"), off)
		}
	case http.StatusOK:
		off = 0 // the server ignored Range: start over
		if err := f.Truncate(0); err != nil {
			return err
		}
		pr.set(m.file, 0, m.size)
	case http.StatusRequestedRangeNotSatisfiable:
		// The partial file does not fit what the server has: start over.
		if err := f.Truncate(0); err != nil {
			return err
		}
		return errRetry{fmt.Errorf("the server refused to resume at byte %d", off)}
	default:
		if resp.StatusCode >= 500 || resp.StatusCode == 429 {
			return errRetry{c.httpError(resp, m.repo, m.repo+"/"+m.file)}
		}
		return c.httpError(resp, m.repo, m.repo+"/"+m.file)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	var w io.Writer = f
	if wrapWriter != nil {
		w = wrapWriter(f)
	}
	w = &countWriter{w: w, pr: pr, file: m.file}
	want := m.size - off
	n, err := copyBody(w, io.LimitReader(resp.Body, want))
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("disk full while writing %s: free space on %s and run again, the download resumes", inc, filepath.Dir(inc))
		}
		var we writeErr
		if errors.As(err, &we) {
			return fmt.Errorf("writing %s: %w", inc, we.err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errRetry{fmt.Errorf("connection lost after %d of %d bytes: %v", off+n, m.size, err)}
	}
	if n < want {
		return errRetry{fmt.Errorf("connection closed after %d of %d bytes", off+n, m.size)}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", inc, err)
	}
	return nil
}

// writeErr marks an error of the destination, as opposed to the network.
type writeErr struct{ err error }

func (e writeErr) Error() string { return e.err.Error() }
func (e writeErr) Unwrap() error { return e.err }

// copyBody copies like io.Copy but tells write errors from read errors.
func copyBody(w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			wk, werr := w.Write(buf[:k])
			n += int64(wk)
			if werr != nil {
				return n, writeErr{werr}
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

type countWriter struct {
	w    io.Writer
	pr   *progress
	file string
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.pr.add(c.file, int64(n))
	return n, err
}

func contentRangeStart(s string) (int64, bool) {
	s, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, false
	}
	i := strings.IndexByte(s, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	return n, err == nil
}

// verify checks a finished download against the size and the hash its
// ETag names: the sha256 for LFS files (64 hex digits), the git blob id
// (sha1 of "blob SIZE\0" and the bytes) for the others (40 hex digits).
// An ETag of another form (some mirrors) is checked by size only.
func verify(p string, m fileMeta) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != m.size {
		return fmt.Errorf("%s: downloaded %d bytes, the Hub announced %d; the partial file was deleted, run again", m.file, st.Size(), m.size)
	}
	var h hash.Hash
	kind := ""
	switch {
	case len(m.etag) == 64 && isHex(m.etag):
		h, kind = sha256.New(), "sha256"
	case len(m.etag) == 40 && isHex(m.etag):
		h, kind = sha1.New(), "git blob id"
		fmt.Fprintf(h, "blob %d\x00", m.size)
	default:
		return nil
	}
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.etag {
		return fmt.Errorf("%s: %s mismatch: the download hashes to %s, the Hub announced %s; the corrupt download was deleted, run again", m.file, kind, got, m.etag)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
