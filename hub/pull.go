package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Snapshot is a model in the cache.
type Snapshot struct {
	Ref    Ref
	Commit string
	Dir    string   // snapshots/COMMIT
	Files  []string // the model's files, relative to Dir
	GGUF   string   // the GGUF file to open (its first part when split); "" for safetensors
	Cached bool     // true when nothing was downloaded
}

// Path is what a model loader opens: the GGUF file, or the snapshot folder.
func (s *Snapshot) Path() string {
	if s.GGUF != "" {
		return filepath.Join(s.Dir, filepath.FromSlash(s.GGUF))
	}
	return s.Dir
}

// Pull makes the model ref names complete in the cache and returns it.
// Online it asks the Hub which commit the revision is at (one request),
// then fetches only the files that commit's snapshot lacks. Offline, or
// when the Hub cannot be reached and the cache has the revision, it uses
// the cache alone.
func (c *Client) Pull(ctx context.Context, ref Ref) (*Snapshot, error) {
	if c.CacheDir == "" {
		c.CacheDir = CacheDir()
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	rc := newRepoCache(c.CacheDir, ref.Repo)
	if c.Offline {
		return c.fromCache(ref, rc)
	}
	hc := c.httpClient()
	commit, listing, err := c.revisionInfo(ctx, hc, ref)
	if err != nil {
		var ne net.Error
		var ue *url.Error
		if (errors.As(err, &ne) || errors.As(err, &ue)) && ctx.Err() == nil {
			if snap, cerr := c.fromCache(ref, rc); cerr == nil {
				if c.Progress != nil {
					fmt.Fprintf(c.Progress, "%s: the Hub cannot be reached (%v); using the cached snapshot %s\n", ref, err, snap.Commit)
				}
				return snap, nil
			}
		}
		return nil, err
	}
	p, err := selectFiles(ref, listing)
	if err != nil {
		return nil, err
	}
	pr := newProgress(c.Progress, ref.Repo, c.ProgressEvery)
	snap, err := c.pull(ctx, hc, ref, rc, commit, listing, p, pr)
	pr.finish(err)
	return snap, err
}

func (c *Client) pull(ctx context.Context, hc *http.Client, ref Ref, rc repoCache, commit string, listing []string, p plan, pr *progress) (*Snapshot, error) {
	cached := true
	files := p.files
	if p.index {
		fetched, err := c.fetchFiles(ctx, hc, rc, ref.Repo, commit, []string{safetensorsIndex}, pr)
		if err != nil {
			return nil, err
		}
		cached = cached && !fetched
		shards, err := c.readShards(rc, commit)
		if err != nil {
			return nil, err
		}
		inRepo := map[string]bool{}
		for _, f := range listing {
			inRepo[f] = true
		}
		for _, s := range shards {
			if !inRepo[s] {
				return nil, fmt.Errorf("%s: %s names shard %s, which the repository does not hold", ref, safetensorsIndex, s)
			}
		}
		files = append(append([]string{}, files...), shards...)
	}
	fetched, err := c.fetchFiles(ctx, hc, rc, ref.Repo, commit, files, pr)
	if err != nil {
		return nil, err
	}
	if err := rc.writeRef(ref.Revision, commit); err != nil {
		return nil, err
	}
	return &Snapshot{Ref: ref, Commit: commit, Dir: rc.snapshot(commit), Files: files, GGUF: p.gguf, Cached: cached && !fetched}, nil
}

func (c *Client) readShards(rc repoCache, commit string) ([]string, error) {
	p := rc.snapshotFile(commit, safetensorsIndex)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return indexShards(p, data)
}

// fetchFiles brings the files into snapshots/COMMIT: a file already there
// costs no request; the others are looked up (HEAD) and downloaded, Workers
// at a time. It reports whether anything was fetched.
func (c *Client) fetchFiles(ctx context.Context, hc *http.Client, rc repoCache, repo, commit string, files []string, pr *progress) (bool, error) {
	var missing []string
	for _, f := range files {
		if st, err := os.Stat(rc.snapshotFile(commit, f)); err == nil && st.Mode().IsRegular() {
			continue
		}
		missing = append(missing, f)
	}
	if len(missing) == 0 {
		return false, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := c.Workers
	if workers <= 0 {
		workers = 4
	}

	// Look every file up first, so that the total is known and the disk
	// space can be checked before a byte is written.
	metas := make([]fileMeta, len(missing))
	if err := parallel(ctx, cancel, workers, len(missing), func(i int) error {
		m, err := c.head(ctx, hc, repo, commit, missing[i])
		metas[i] = m
		return err
	}); err != nil {
		return false, err
	}
	var need int64
	seen := map[string]bool{}
	for _, m := range metas {
		pr.register(m.file, m.size)
		if seen[m.etag] {
			continue
		}
		seen[m.etag] = true
		if st, err := os.Stat(rc.blob(m.etag)); err == nil && st.Size() == m.size {
			continue
		}
		need += m.size
		if st, err := os.Stat(rc.blob(m.etag) + ".incomplete"); err == nil && st.Size() <= m.size {
			need -= st.Size()
		}
	}
	if err := os.MkdirAll(filepath.Join(rc.dir, "blobs"), 0o755); err != nil {
		return false, err
	}
	if free, ok := diskFree(filepath.Join(rc.dir, "blobs")); ok && need > free {
		return false, fmt.Errorf("not enough disk space in %s: the download needs %s more, %s is free", c.CacheDir, humanBytes(need), humanBytes(free))
	}

	// Two files of one repository may share a blob: the lock file makes
	// the second wait for the first, then find the blob there.
	err := parallel(ctx, cancel, workers, len(metas), func(i int) error {
		m := metas[i]
		if err := c.fetchBlob(ctx, hc, rc, m, pr); err != nil {
			return err
		}
		return rc.link(commit, m.file, m.etag)
	})
	return true, err
}

// parallel runs fn(0..n-1) on up to workers goroutines and returns the
// first error, cancelling the others.
func parallel(ctx context.Context, cancel func(), workers, n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || ctx.Err() != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil && !errors.Is(err, context.Canceled) {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// fromCache finds ref in the cache without the network: the revision's
// commit from refs/ (or the commit itself), and every file the model needs
// present in its snapshot.
func (c *Client) fromCache(ref Ref, rc repoCache) (*Snapshot, error) {
	notCached := func(why string) error {
		hint := ""
		if c.Offline {
			hint = "; HF_HUB_OFFLINE is set, so nothing is downloaded: run `jamba pull " + ref.String() + "` where the Hub can be reached"
		}
		return &cacheMiss{fmt.Sprintf("%s is not in the cache %s (%s)%s", ref, c.CacheDir, why, hint)}
	}
	commit, err := rc.cachedCommit(ref.Revision)
	if err != nil {
		return nil, notCached("no snapshot for revision " + ref.Revision)
	}
	dir := rc.snapshot(commit)
	have, err := snapshotFiles(dir)
	if err != nil {
		return nil, err
	}
	listing := make([]string, 0, len(have))
	for f := range have {
		listing = append(listing, f)
	}
	sort.Strings(listing)
	p, err := selectFiles(ref, listing)
	if err != nil {
		return nil, notCached(err.Error())
	}
	files := p.files
	if p.index {
		shards, err := c.readShards(rc, commit)
		if err != nil {
			return nil, err
		}
		files = append(append([]string{}, files...), shards...)
	}
	for _, f := range files {
		if !have[f] {
			return nil, notCached("snapshot " + commit + " lacks " + f)
		}
	}
	return &Snapshot{Ref: ref, Commit: commit, Dir: dir, Files: files, GGUF: p.gguf, Cached: true}, nil
}

// cacheMiss is an offline lookup the cache cannot answer.
type cacheMiss struct{ msg string }

func (e *cacheMiss) Error() string        { return e.msg }
func (e *cacheMiss) Is(target error) bool { return target == ErrNotCached }
