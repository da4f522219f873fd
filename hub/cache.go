package hub

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/jamba-go/jamba/internal/atomicfile"
)

// CacheDir is the cache huggingface_hub uses: $HF_HUB_CACHE, else
// $HUGGINGFACE_HUB_CACHE (its older name), else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
func CacheDir() string {
	for _, v := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		if d := os.Getenv(v); d != "" {
			return expandHome(d)
		}
	}
	return filepath.Join(hfHome(), "hub")
}

// hfHome is $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
// ~/.cache/huggingface.
func hfHome() string {
	if d := os.Getenv("HF_HOME"); d != "" {
		return expandHome(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(expandHome(d), "huggingface")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".cache", "huggingface")
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// repoFolder is the cache folder name of a model repository:
// "models--org--name".
func repoFolder(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// repoCache holds the paths of one repository inside the cache.
type repoCache struct {
	root  string // the cache directory
	dir   string // root/models--org--name
	locks string // root/.locks/models--org--name
}

func newRepoCache(root, repo string) repoCache {
	f := repoFolder(repo)
	return repoCache{root: root, dir: filepath.Join(root, f), locks: filepath.Join(root, ".locks", f)}
}

func (c repoCache) blob(etag string) string { return filepath.Join(c.dir, "blobs", etag) }

func (c repoCache) snapshot(commit string) string {
	return filepath.Join(c.dir, "snapshots", commit)
}

func (c repoCache) snapshotFile(commit, file string) string {
	return filepath.Join(c.dir, "snapshots", commit, filepath.FromSlash(file))
}

func (c repoCache) refFile(rev string) string {
	return filepath.Join(c.dir, "refs", filepath.FromSlash(rev))
}

// cachedCommit returns the commit a revision points to in the cache: the
// revision itself when it is a commit hash, else the content of refs/REV.
func (c repoCache) cachedCommit(rev string) (string, error) {
	if isCommit(rev) {
		if _, err := os.Stat(c.snapshot(rev)); err != nil {
			return "", err
		}
		return rev, nil
	}
	data, err := os.ReadFile(c.refFile(rev))
	if err != nil {
		return "", err
	}
	commit := strings.TrimSpace(string(data))
	if !isCommit(commit) {
		return "", fmt.Errorf("%s: %q is not a commit hash", c.refFile(rev), commit)
	}
	return commit, nil
}

// writeRef records that rev points to commit, atomically. Nothing is
// written when rev is the commit itself, as huggingface_hub does.
func (c repoCache) writeRef(rev, commit string) error {
	if rev == commit {
		return nil
	}
	p := c.refFile(rev)
	if old, err := os.ReadFile(p); err == nil && string(old) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, []byte(commit))
}

// link makes snapshots/COMMIT/FILE a relative symlink to blobs/ETAG,
// replacing whatever was there in one rename.
func (c repoCache) link(commit, file, etag string) error {
	dst := c.snapshotFile(commit, file)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// From snapshots/COMMIT/a/b/FILE the blob is ../../../../blobs/ETAG:
	// one ".." per directory below the repository folder.
	depth := 2 + strings.Count(file, "/")
	target := strings.Repeat("../", depth) + path.Join("blobs", etag)
	tmp := dst + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(filepath.FromSlash(target), tmp); err != nil {
		return fmt.Errorf("linking %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("linking %s: %w", dst, err)
	}
	return nil
}

// snapshotFiles lists the regular files (links resolved) under a snapshot,
// as slash-separated paths relative to it.
func snapshotFiles(dir string) (map[string]bool, error) {
	files := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			return nil // a dangling link is a missing file
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = true
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return files, nil
	}
	return files, err
}
