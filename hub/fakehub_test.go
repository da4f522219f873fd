package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeHub speaks the Hub's download protocol on loopback: the revision
// API, HEAD/GET of resolve/REV/FILE (LFS files redirect to a second server,
// the "CDN", as huggingface.co redirects to its storage), and Range on the
// CDN. It can cut a connection mid-file, serve corrupt bytes, fail with a
// server error, and guard a gated repository with a token.
type fakeHub struct {
	t   *testing.T
	hub *httptest.Server
	cdn *httptest.Server

	mu       sync.Mutex
	repos    map[string]*fakeRepo
	log      []string           // "hub GET /api/...", "cdn GET /lfs/... range=bytes=N-"
	cdnAuth  []string           // Authorization headers the CDN received
	hubAuth  []string           // Authorization headers the hub received
	cut      map[string][]int64 // sha → bytes to send before cutting, one entry per cut request
	corrupt  map[string]bool    // sha → flip a byte
	fail     int                // status for every API request when non-zero
	cdnFail  int                // status for every CDN request when non-zero
	token    string             // the token a gated repository accepts
	noRanges bool               // the CDN ignores Range
}

type fakeRepo struct {
	commit string
	files  map[string][]byte
	lfs    map[string]bool
	gated  bool
}

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	f := &fakeHub{t: t, repos: map[string]*fakeRepo{}, cut: map[string][]int64{}, corrupt: map[string]bool{}, token: "hf_test_token"}
	f.cdn = httptest.NewServer(http.HandlerFunc(f.serveCDN))
	f.hub = httptest.NewServer(http.HandlerFunc(f.serveHub))
	t.Cleanup(func() {
		f.hub.Close()
		f.cdn.Close()
	})
	return f
}

func (f *fakeHub) addRepo(name string, r *fakeRepo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repos[name] = r
}

func (f *fakeHub) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeHub) resetLog() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log, f.cdnAuth, f.hubAuth = nil, nil, nil
}

func gitBlobID(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// etag is the blob name huggingface_hub gives a file.
func (r *fakeRepo) etag(file string) string {
	if r.lfs[file] {
		return sha256Hex(r.files[file])
	}
	return gitBlobID(r.files[file])
}

func (f *fakeHub) serveHub(w http.ResponseWriter, req *http.Request) {
	f.mu.Lock()
	f.log = append(f.log, "hub "+req.Method+" "+req.URL.EscapedPath())
	if a := req.Header.Get("Authorization"); a != "" {
		f.hubAuth = append(f.hubAuth, a)
	}
	fail := f.fail
	f.mu.Unlock()
	p := req.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(p, "/api/models/"); ok {
		if fail != 0 {
			http.Error(w, "internal error", fail)
			return
		}
		parts := strings.SplitN(rest, "/", 4) // org, name, "revision", rev
		if len(parts) != 4 || parts[2] != "revision" {
			http.NotFound(w, req)
			return
		}
		repo := f.repo(parts[0] + "/" + parts[1])
		if repo == nil {
			w.Header().Set("X-Error-Code", "RepoNotFound")
			http.Error(w, "Repository not found", http.StatusNotFound)
			return
		}
		if rev := parts[3]; rev != "main" && rev != repo.commit {
			w.Header().Set("X-Error-Code", "RevisionNotFound")
			http.Error(w, "Invalid rev id", http.StatusNotFound)
			return
		}
		type sib struct {
			RFilename string `json:"rfilename"`
		}
		var sibs []sib
		for name := range repo.files {
			sibs = append(sibs, sib{name})
		}
		sort.Slice(sibs, func(i, j int) bool { return sibs[i].RFilename < sibs[j].RFilename })
		json.NewEncoder(w).Encode(map[string]any{"id": parts[0] + "/" + parts[1], "sha": repo.commit, "siblings": sibs})
		return
	}
	// /{org}/{name}/resolve/{rev}/{file...}
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 5)
	if len(parts) != 5 || parts[2] != "resolve" {
		http.NotFound(w, req)
		return
	}
	repo := f.repo(parts[0] + "/" + parts[1])
	if repo == nil {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.Error(w, "Repository not found", http.StatusNotFound)
		return
	}
	if repo.gated && req.Header.Get("Authorization") != "Bearer "+f.token {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+parts[0]+"/"+parts[1]+" is restricted.")
		http.Error(w, "gated", http.StatusUnauthorized)
		return
	}
	if parts[3] != "main" && parts[3] != repo.commit {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		http.Error(w, "Invalid rev id", http.StatusNotFound)
		return
	}
	file := parts[4]
	data, ok := repo.files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", repo.commit)
	if repo.lfs[file] {
		sum := sha256Hex(data)
		w.Header().Set("ETag", `"`+gitBlobID([]byte("pointer "+sum))+`"`) // the pointer file's id
		w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		w.Header().Set("Location", f.cdn.URL+"/lfs/"+sum+"?signed=1")
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+gitBlobID(data)+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		w.Write(data)
	}
}

func (f *fakeHub) repo(name string) *fakeRepo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.repos[name]
}

func (f *fakeHub) serveCDN(w http.ResponseWriter, req *http.Request) {
	sum := strings.TrimPrefix(req.URL.Path, "/lfs/")
	f.mu.Lock()
	f.log = append(f.log, "cdn "+req.Method+" "+req.URL.Path+" range="+req.Header.Get("Range"))
	if a := req.Header.Get("Authorization"); a != "" {
		f.cdnAuth = append(f.cdnAuth, a)
	}
	var data []byte
	for _, r := range f.repos {
		for name, d := range r.files {
			if r.lfs[name] && sha256Hex(d) == sum {
				data = d
			}
		}
	}
	var cut int64 = -1
	if c := f.cut[sum]; len(c) > 0 {
		cut, f.cut[sum] = c[0], c[1:]
	}
	corrupt, cdnFail, noRanges := f.corrupt[sum], f.cdnFail, f.noRanges
	f.mu.Unlock()
	if cdnFail != 0 {
		http.Error(w, "storage unavailable", cdnFail)
		return
	}
	if data == nil {
		http.NotFound(w, req)
		return
	}
	if corrupt {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
	}
	start := int64(0)
	if r := req.Header.Get("Range"); r != "" && !noRanges {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r, "bytes="), "-"), 10, 64)
		if err != nil || n > int64(len(data)) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
	}
	body := data[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if start > 0 {
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if cut >= 0 && cut < int64(len(body)) {
		w.Write(body[:cut])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			f.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
		return
	}
	w.Write(body)
}
