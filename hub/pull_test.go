package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jamba-go/jamba/hub/hubtest"
)

const testCommit = "0123456789abcdef0123456789abcdef01234567"

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// tinyRepo is a safetensors model repository with files a model does not
// need (a README, PyTorch weights) beside those it does.
func tinyRepo() *hubtest.Repo {
	return &hubtest.Repo{
		Commit: testCommit,
		Files: map[string][]byte{
			"config.json":           []byte(`{"model_type":"jamba"}`),
			"tokenizer.json":        []byte(`{"model":{"type":"BPE"}}`),
			"tokenizer_config.json": []byte(`{"chat_template":"{{ messages }}"}`),
			"model.safetensors":     randBytes(300_000, 1),
			"README.md":             []byte("# tiny\n"),
			"pytorch_model.bin":     randBytes(1000, 2),
			".gitattributes":        []byte("*.safetensors filter=lfs\n"),
		},
		LFS: map[string]bool{"model.safetensors": true, "pytorch_model.bin": true},
	}
}

func testClient(f *hubtest.Hub, cache string) *Client {
	return &Client{Endpoint: f.URL(), CacheDir: cache, ProgressEvery: time.Hour}
}

// cacheListing describes a cache tree: one line per file, "path ->
// target" for a link, "path = content" for a ref.
func cacheListing(t *testing.T, root string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			lines = append(lines, rel+" -> "+filepath.ToSlash(target))
		case strings.Contains(rel, "/refs/"):
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			lines = append(lines, rel+" = "+string(data))
		default:
			lines = append(lines, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return lines
}

// expectedListing is the tree huggingface_hub's cache documentation
// ("Understand caching" and the Hub's "Local Cache" reference) describes
// for a download of files at revision rev: the repository folder
// models--ORG--NAME with blobs/ named by ETag (the sha256 of LFS files, the
// git blob id of the others), refs/REV holding the commit hash (absent when
// rev is the commit), snapshots/COMMIT/FILE as relative links to
// ../../blobs/ETAG, and .locks/models--ORG--NAME/ETAG.lock at the root.
func expectedListing(repoName, rev string, r *hubtest.Repo, files []string) []string {
	folder := "models--" + strings.ReplaceAll(repoName, "/", "--")
	var lines []string
	blobs := map[string]bool{}
	for _, f := range files {
		e := r.ETag(f)
		if !blobs[e] {
			blobs[e] = true
			lines = append(lines, folder+"/blobs/"+e, ".locks/"+folder+"/"+e+".lock")
		}
		lines = append(lines, folder+"/snapshots/"+r.Commit+"/"+f+" -> "+strings.Repeat("../", 2+strings.Count(f, "/"))+"blobs/"+e)
	}
	if rev != r.Commit {
		lines = append(lines, folder+"/refs/"+rev+" = "+r.Commit)
	}
	sort.Strings(lines)
	return lines
}

func TestPullCacheLayoutAndSecondRun(t *testing.T) {
	f := hubtest.New(t)
	repo := tinyRepo()
	f.AddRepo("jamba-test/tiny", repo)
	cache := t.TempDir()
	c := testClient(f, cache)
	c.Token = "hf_secret"
	ref, _ := ParseRef("jamba-test/tiny")

	snap, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	want := expectedListing("jamba-test/tiny", "main", repo, []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
	if got := cacheListing(t, cache); !slices.Equal(got, want) {
		t.Fatalf("cache tree:\n%s\nwant (huggingface_hub's layout):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if snap.Path() != filepath.Join(cache, "models--jamba-test--tiny", "snapshots", testCommit) || snap.Cached {
		t.Fatalf("snapshot %+v", snap)
	}
	for name, data := range repo.Files {
		got, err := os.ReadFile(filepath.Join(snap.Dir, name))
		switch name {
		case "README.md", "pytorch_model.bin", ".gitattributes":
			if err == nil {
				t.Errorf("%s was downloaded; a model does not need it", name)
			}
		default:
			if err != nil || string(got) != string(data) {
				t.Errorf("%s: read through the snapshot link: %v (%d bytes, want %d)", name, err, len(got), len(data))
			}
		}
	}
	f.Mu.Lock()
	cdnAuth, hubAuth := f.CDNAuth, f.HubAuth
	f.Mu.Unlock()
	if len(cdnAuth) != 0 {
		t.Errorf("the token went to the CDN host: %v", cdnAuth)
	}
	if len(hubAuth) == 0 || hubAuth[0] != "Bearer hf_secret" {
		t.Errorf("the hub got Authorization %v, want the token", hubAuth)
	}

	// A second run asks only which commit main is at.
	f.ResetLog()
	snap2, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Requests(); !slices.Equal(got, []string{"hub GET /api/models/jamba-test/tiny/revision/main"}) {
		t.Errorf("second run made requests %q, want only the revision check", got)
	}
	if !snap2.Cached || snap2.Path() != snap.Path() {
		t.Errorf("second run: %+v", snap2)
	}

	// Offline: no request at all, same folder.
	f.ResetLog()
	c.Offline = true
	snap3, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Requests(); len(got) != 0 || snap3.Path() != snap.Path() {
		t.Errorf("offline run made requests %q, path %s", got, snap3.Path())
	}
	// By commit hash, offline, too.
	byCommit, _ := ParseRef("jamba-test/tiny@" + testCommit)
	if s, err := c.Pull(context.Background(), byCommit); err != nil || s.Path() != snap.Path() {
		t.Errorf("offline by Commit: %v", err)
	}
	// A revision never fetched is not there offline, and the message says why.
	other, _ := ParseRef("jamba-test/tiny@v2")
	_, err = c.Pull(context.Background(), other)
	if !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") {
		t.Errorf("offline, uncached revision: %v", err)
	}
}

func TestPullByCommitWritesNoRef(t *testing.T) {
	f := hubtest.New(t)
	repo := tinyRepo()
	f.AddRepo("jamba-test/tiny", repo)
	cache := t.TempDir()
	ref, _ := ParseRef("jamba-test/tiny@" + testCommit)
	if _, err := testClient(f, cache).Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	want := expectedListing("jamba-test/tiny", testCommit, repo, []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
	if got := cacheListing(t, cache); !slices.Equal(got, want) {
		t.Fatalf("cache tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPullShardedSafetensors(t *testing.T) {
	f := hubtest.New(t)
	index, _ := json.Marshal(map[string]any{
		"metadata":   map[string]any{"total_size": 3},
		"weight_map": map[string]string{"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"},
	})
	repo := &hubtest.Repo{
		Commit: testCommit,
		Files: map[string][]byte{
			"config.json":                      []byte(`{}`),
			"model.safetensors.index.json":     index,
			"model-00001-of-00002.safetensors": randBytes(70_000, 3),
			"model-00002-of-00002.safetensors": randBytes(50_000, 4),
			"consolidated.safetensors":         randBytes(9_000, 5), // not in the index: not needed
		},
		LFS: map[string]bool{"model-00001-of-00002.safetensors": true, "model-00002-of-00002.safetensors": true, "consolidated.safetensors": true},
	}
	f.AddRepo("jamba-test/sharded", repo)
	cache := t.TempDir()
	ref, _ := ParseRef("jamba-test/sharded")
	snap, err := testClient(f, cache).Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	want := expectedListing("jamba-test/sharded", "main", repo, []string{"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
	if got := cacheListing(t, cache); !slices.Equal(got, want) {
		t.Fatalf("cache tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(snap.Files) != 4 {
		t.Errorf("files %v", snap.Files)
	}
	// Offline finds the shards through the cached index.
	c := testClient(f, cache)
	c.Offline = true
	if _, err := c.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	// A cached snapshot that lost a shard is not complete.
	os.Remove(filepath.Join(snap.Dir, "model-00002-of-00002.safetensors"))
	if _, err := c.Pull(context.Background(), ref); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "lacks model-00002-of-00002.safetensors") {
		t.Errorf("snapshot missing a shard: %v", err)
	}
}

// noPartialBlob checks that blobs/ holds no final blob of the file and that
// no snapshot links to it.
func noPartialBlob(t *testing.T, cache, repoName string, r *hubtest.Repo, file string) {
	t.Helper()
	rc := newRepoCache(cache, repoName)
	if _, err := os.Stat(rc.blob(r.ETag(file))); err == nil {
		t.Errorf("blobs/%s exists after a failed download", r.ETag(file))
	}
	if _, err := os.Lstat(rc.snapshotFile(r.Commit, file)); err == nil {
		t.Errorf("snapshot link to %s exists after a failed download", file)
	}
	if _, err := os.Stat(rc.refFile("main")); err == nil {
		t.Errorf("refs/main written after a failed download")
	}
}

func TestPullResumesACutConnection(t *testing.T) {
	f := hubtest.New(t)
	repo := tinyRepo()
	f.AddRepo("jamba-test/tiny", repo)
	sum := repo.ETag("model.safetensors")
	ref, _ := ParseRef("jamba-test/tiny")

	// Within one run: cut twice, resumed with Range each time.
	f.Cut[sum] = []int64{100_000, 50_000}
	cache := t.TempDir()
	snap, err := testClient(f, cache).Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	var ranges []string
	for _, r := range f.Requests() {
		if strings.HasPrefix(r, "cdn GET") {
			ranges = append(ranges, r[strings.Index(r, "range="):])
		}
	}
	if !slices.Equal(ranges, []string{"range=", "range=bytes=100000-", "range=bytes=150000-"}) {
		t.Errorf("CDN requests %q", ranges)
	}
	if data, _ := os.ReadFile(filepath.Join(snap.Dir, "model.safetensors")); string(data) != string(repo.Files["model.safetensors"]) {
		t.Error("resumed file differs")
	}

	// Across runs: a run without retries fails, keeps the .incomplete
	// file, and the next run continues it.
	f.ResetLog()
	f.Cut[sum] = []int64{120_000}
	cache = t.TempDir()
	c := testClient(f, cache)
	c.Retries = -1
	_, err = c.Pull(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), "connection") || !strings.Contains(err.Error(), "run again to resume") {
		t.Fatalf("cut without retries: %v", err)
	}
	noPartialBlob(t, cache, "jamba-test/tiny", repo, "model.safetensors")
	inc := newRepoCache(cache, "jamba-test/tiny").blob(sum) + ".incomplete"
	if st, err := os.Stat(inc); err != nil || st.Size() != 120_000 {
		t.Fatalf(".incomplete after the cut: %v", err)
	}
	f.ResetLog()
	if _, err := c.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.Requests(), "cdn GET /lfs/"+sum+" range=bytes=120000-") {
		t.Errorf("second run did not resume: %q", f.Requests())
	}
	if _, err := os.Stat(inc); err == nil {
		t.Error(".incomplete left after the download finished")
	}

	// A server that ignores Range sends the whole file again; it must not
	// be appended to the partial one.
	f.Cut[sum] = []int64{120_000}
	f.NoRanges = true
	cache = t.TempDir()
	c = testClient(f, cache)
	snap, err = c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(snap.Dir, "model.safetensors")); string(data) != string(repo.Files["model.safetensors"]) {
		t.Error("file differs after a server ignored Range")
	}
}

func TestPullWrongHash(t *testing.T) {
	f := hubtest.New(t)
	repo := tinyRepo()
	f.AddRepo("jamba-test/tiny", repo)
	sum := repo.ETag("model.safetensors")
	f.Corrupt[sum] = true
	cache := t.TempDir()
	c := testClient(f, cache)
	ref, _ := ParseRef("jamba-test/tiny")
	_, err := c.Pull(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("corrupt download: %v", err)
	}
	noPartialBlob(t, cache, "jamba-test/tiny", repo, "model.safetensors")
	if _, err := os.Stat(newRepoCache(cache, "jamba-test/tiny").blob(sum) + ".incomplete"); err == nil {
		t.Error("a corrupt .incomplete file was kept; resuming it could never succeed")
	}
	f.Corrupt[sum] = false
	if _, err := c.Pull(context.Background(), ref); err != nil {
		t.Fatalf("after the server is fixed: %v", err)
	}
}

func TestPullGatedNeedsToken(t *testing.T) {
	f := hubtest.New(t)
	repo := tinyRepo()
	repo.Gated = true
	f.AddRepo("jamba-test/gated", repo)
	cache := t.TempDir()
	c := testClient(f, cache)
	ref, _ := ParseRef("jamba-test/gated")
	_, err := c.Pull(context.Background(), ref)
	want := "accept the license at " + f.URL() + "/jamba-test/gated"
	if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "HF_TOKEN") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("gated without a token: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "models--jamba-test--gated", "snapshots")); err == nil {
		t.Error("a refused pull created snapshots/")
	}
	c.Token = "wrong"
	if _, err := c.Pull(context.Background(), ref); !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), "the token given has no access") {
		t.Fatalf("gated with a wrong token: %v", err)
	}
	c.Token = f.Token
	if _, err := c.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
}

func TestPullNotFound(t *testing.T) {
	f := hubtest.New(t)
	f.AddRepo("jamba-test/tiny", tinyRepo())
	cache := t.TempDir()
	c := testClient(f, cache)
	ref, _ := ParseRef("jamba-test/nothing")
	_, err := c.Pull(context.Background(), ref)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no model repository jamba-test/nothing") {
		t.Fatalf("missing repository: %v", err)
	}
	ref, _ = ParseRef("jamba-test/tiny@nope")
	if _, err = c.Pull(context.Background(), ref); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no such revision") {
		t.Fatalf("missing revision: %v", err)
	}
	if entries, _ := os.ReadDir(cache); len(entries) != 0 {
		t.Errorf("failed lookups wrote to the cache: %v", entries)
	}
}

func TestPullServerError(t *testing.T) {
	f := hubtest.New(t)
	repo := tinyRepo()
	f.AddRepo("jamba-test/tiny", repo)
	cache := t.TempDir()
	c := testClient(f, cache)
	c.Retries = -1
	ref, _ := ParseRef("jamba-test/tiny")
	f.Fail = 502
	if _, err := c.Pull(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "server error HTTP 502") {
		t.Fatalf("API 502: %v", err)
	}
	f.Fail = 0
	f.CDNFail = 503
	_, err := c.Pull(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), "server error HTTP 503") || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("CDN 503: %v", err)
	}
	noPartialBlob(t, cache, "jamba-test/tiny", repo, "model.safetensors")
	f.CDNFail = 0
	if _, err := c.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
}

// enospcWriter accepts limit bytes, then fails as a full disk does.
type enospcWriter struct {
	w     io.Writer
	limit int
}

func (e *enospcWriter) Write(p []byte) (int, error) {
	if len(p) > e.limit {
		n, _ := e.w.Write(p[:e.limit])
		e.limit = 0
		return n, &os.PathError{Op: "write", Path: "blob", Err: syscall.ENOSPC}
	}
	e.limit -= len(p)
	return e.w.Write(p)
}

func TestPullDiskFull(t *testing.T) {
	f := hubtest.New(t)
	repo := tinyRepo()
	f.AddRepo("jamba-test/tiny", repo)
	cache := t.TempDir()
	c := testClient(f, cache)
	c.Workers = 1
	ref, _ := ParseRef("jamba-test/tiny")

	// Not enough space known before the start: nothing is written.
	saved := diskFree
	diskFree = func(string) (int64, bool) { return 1000, true }
	_, err := c.Pull(context.Background(), ref)
	diskFree = saved
	if err == nil || !strings.Contains(err.Error(), "not enough disk space") || !strings.Contains(err.Error(), "1000 B is free") {
		t.Fatalf("disk space check: %v", err)
	}
	noPartialBlob(t, cache, "jamba-test/tiny", repo, "model.safetensors")

	// The disk fills during the download.
	wrapWriter = func(w io.Writer) io.Writer { return &enospcWriter{w: w, limit: 64 << 10} }
	_, err = c.Pull(context.Background(), ref)
	wrapWriter = nil
	if err == nil || !strings.Contains(err.Error(), "disk full while writing") || !strings.Contains(err.Error(), ".incomplete") {
		t.Fatalf("disk full: %v", err)
	}
	noPartialBlob(t, cache, "jamba-test/tiny", repo, "model.safetensors")
	f.ResetLog()
	if _, err := c.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	resumed := false
	for _, r := range f.Requests() {
		resumed = resumed || (strings.HasPrefix(r, "cdn GET") && strings.Contains(r, "range=bytes="))
	}
	if !resumed {
		t.Errorf("the run after the disk was freed did not resume: %q", f.Requests())
	}
}

func TestPullGGUF(t *testing.T) {
	f := hubtest.New(t)
	repo := &hubtest.Repo{
		Commit: testCommit,
		Files: map[string][]byte{
			"README.md":                         []byte("x"),
			"tiny-Q4_K_M.gguf":                  randBytes(5000, 6),
			"tiny-Q8_0.gguf":                    randBytes(6000, 7),
			"mmproj-tiny-F16.gguf":              randBytes(100, 8),
			"big/tiny-Q2_K-00001-of-00002.gguf": randBytes(3000, 9),
			"big/tiny-Q2_K-00002-of-00002.gguf": randBytes(2000, 10),
		},
		LFS: map[string]bool{"tiny-Q4_K_M.gguf": true, "tiny-Q8_0.gguf": true, "mmproj-tiny-F16.gguf": true,
			"big/tiny-Q2_K-00001-of-00002.gguf": true, "big/tiny-Q2_K-00002-of-00002.gguf": true},
	}
	f.AddRepo("jamba-test/tiny-GGUF", repo)
	cache := t.TempDir()
	c := testClient(f, cache)
	for _, tc := range []struct{ ref, gguf string }{
		{"jamba-test/tiny-GGUF", "tiny-Q4_K_M.gguf"},
		{"jamba-test/tiny-GGUF:q8_0", "tiny-Q8_0.gguf"},
		{"jamba-test/tiny-GGUF:tiny-Q8_0.gguf", "tiny-Q8_0.gguf"},
		{"jamba-test/tiny-GGUF:Q2_K", "big/tiny-Q2_K-00001-of-00002.gguf"},
	} {
		ref, err := ParseRef(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := c.Pull(context.Background(), ref)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if snap.Path() != filepath.Join(snap.Dir, filepath.FromSlash(tc.gguf)) {
			t.Errorf("%s: path %s, want %s", tc.ref, snap.Path(), tc.gguf)
		}
	}
	want := expectedListing("jamba-test/tiny-GGUF", "main", repo, []string{"tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf", "big/tiny-Q2_K-00001-of-00002.gguf", "big/tiny-Q2_K-00002-of-00002.gguf"})
	if got := cacheListing(t, cache); !slices.Equal(got, want) {
		t.Fatalf("cache tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ref, _ := ParseRef("jamba-test/tiny-GGUF:Q5_K_S")
	if _, err := c.Pull(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "no GGUF file of quantization Q5_K_S; it has: Q2_K, Q4_K_M, Q8_0") {
		t.Errorf("unknown quantization: %v", err)
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ref
		bad  bool
	}{
		{in: "ai21labs/AI21-Jamba-Mini-1.7", want: Ref{Repo: "ai21labs/AI21-Jamba-Mini-1.7", Revision: "main"}},
		{in: "org/name@v1.0", want: Ref{Repo: "org/name", Revision: "v1.0"}},
		{in: "org/name@refs/pr/3", want: Ref{Repo: "org/name", Revision: "refs/pr/3"}},
		{in: "org/name-GGUF:Q4_K_M", want: Ref{Repo: "org/name-GGUF", Revision: "main", Quant: "Q4_K_M"}},
		{in: "org/name-GGUF@dev:model.Q8_0.gguf", want: Ref{Repo: "org/name-GGUF", Revision: "dev", File: "model.Q8_0.gguf"}},
		{in: "name", bad: true},
		{in: "./models/x", bad: true},
		{in: "/abs/path", bad: true},
		{in: "a/b/c", bad: true},
		{in: "org/na--me", bad: true},
		{in: "org/..", bad: true},
		{in: "org/name@../../etc", bad: true},
		{in: "org/name@a//b", bad: true},
		{in: "", bad: true},
	} {
		got, err := ParseRef(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseRef(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParseRef(got.String()); err != nil || again != got {
			t.Errorf("ParseRef(%q.String()=%q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
}

func TestCacheDirFromEnv(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HUGGINGFACE_HUB_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HF_HOME", "/tmp/hfhome")
	if got := CacheDir(); got != "/tmp/hfhome/hub" {
		t.Errorf("HF_HOME: %s", got)
	}
	t.Setenv("HF_HUB_CACHE", "/tmp/hubcache")
	if got := CacheDir(); got != "/tmp/hubcache" {
		t.Errorf("HF_HUB_CACHE: %s", got)
	}
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := CacheDir(); got != "/home/u/.cache/huggingface/hub" {
		t.Errorf("default: %s", got)
	}
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_TOKEN", "hf_x")
	c := FromEnv()
	if c.Endpoint != "http://127.0.0.1:9" || !c.Offline || c.Token != "hf_x" {
		t.Errorf("FromEnv: %+v", c)
	}
}

// TestPullPlainProgressLines checks that a pull logged to a file (not a
// terminal) prints plain lines, never carriage returns.
func TestPullPlainProgressLines(t *testing.T) {
	f := hubtest.New(t)
	f.AddRepo("jamba-test/tiny", tinyRepo())
	var out strings.Builder
	c := testClient(f, t.TempDir())
	c.Progress = &out
	c.ProgressEvery = time.Millisecond
	ref, _ := ParseRef("jamba-test/tiny")
	if _, err := c.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "\r") || !strings.Contains(s, "jamba-test/tiny: model.safetensors (293.0 KiB) done") || !strings.Contains(s, "jamba-test/tiny: 4 files, ") {
		t.Errorf("progress output:\n%s", s)
	}
}

func ExampleRef_String() {
	r, _ := ParseRef("org/name-GGUF@v2:q4_k_m")
	fmt.Println(r.Repo, r.Revision, r.Quant)
	// Output: org/name-GGUF v2 q4_k_m
}

// TestPullUnreachableUsesCache: with the Hub unreachable, a cached revision
// is used (with a note), as huggingface_hub falls back to its cache; an
// uncached one fails with the network error.
func TestPullUnreachableUsesCache(t *testing.T) {
	f := hubtest.New(t)
	f.AddRepo("jamba-test/tiny", tinyRepo())
	cache := t.TempDir()
	c := testClient(f, cache)
	ref, _ := ParseRef("jamba-test/tiny")
	snap, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	down := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: cache, Progress: &out}
	got, err := down.Pull(context.Background(), ref)
	if err != nil || got.Path() != snap.Path() || !strings.Contains(out.String(), "cannot be reached") {
		t.Fatalf("unreachable hub with a cached model: %v, %q", err, out.String())
	}
	other, _ := ParseRef("jamba-test/other")
	if _, err := down.Pull(context.Background(), other); err == nil || errors.Is(err, ErrNotCached) {
		t.Fatalf("unreachable hub, uncached model: %v", err)
	}
}
