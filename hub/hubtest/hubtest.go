// Package hubtest is a fake Hugging Face Hub for tests: it speaks the
// download protocol of huggingface.co on loopback, with a second server
// standing for the storage host that LFS files redirect to.
package hubtest

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

// Hub speaks the Hub's download protocol on loopback: the revision API,
// HEAD/GET of resolve/REV/FILE (LFS files redirect to a second server, the
// "CDN", as huggingface.co redirects to its storage), and Range on the CDN.
// It can cut a connection mid-file, serve corrupt bytes, fail with a server
// error, and guard a gated repository with a token. Tests change the
// exported fields under Mu.
type Hub struct {
	t   testing.TB
	hub *httptest.Server
	cdn *httptest.Server

	Mu       sync.Mutex
	repos    map[string]*Repo
	log      []string           // "hub GET /api/...", "cdn GET /lfs/... range=bytes=N-"
	CDNAuth  []string           // Authorization headers the CDN received
	HubAuth  []string           // Authorization headers the hub received
	Cut      map[string][]int64 // sha256 → bytes to send before cutting, one entry per request
	Corrupt  map[string]bool    // sha256 → flip a byte
	Fail     int                // status for every API request when non-zero
	CDNFail  int                // status for every CDN request when non-zero
	Token    string             // the token a gated repository accepts
	NoRanges bool               // the CDN ignores Range
}

// Repo is one model repository at one commit.
type Repo struct {
	Commit string
	Files  map[string][]byte
	LFS    map[string]bool // files stored in LFS (served by a redirect to the CDN)
	Gated  bool            // resolve needs Token
}

// New starts a fake hub and its CDN, closed when the test ends.
func New(t testing.TB) *Hub {
	t.Helper()
	f := &Hub{t: t, repos: map[string]*Repo{}, Cut: map[string][]int64{}, Corrupt: map[string]bool{}, Token: "hf_test_token"}
	f.cdn = httptest.NewServer(http.HandlerFunc(f.serveCDN))
	f.hub = httptest.NewServer(http.HandlerFunc(f.serveHub))
	t.Cleanup(func() {
		f.hub.Close()
		f.cdn.Close()
	})
	return f
}

// URL is the hub's address, for HF_ENDPOINT.
func (f *Hub) URL() string { return f.hub.URL }

// AddRepo serves r as name ("org/name").
func (f *Hub) AddRepo(name string, r *Repo) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.repos[name] = r
}

// Requests lists the requests served since the last ResetLog.
func (f *Hub) Requests() []string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return append([]string(nil), f.log...)
}

// ResetLog forgets the requests and Authorization headers seen.
func (f *Hub) ResetLog() {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.log, f.CDNAuth, f.HubAuth = nil, nil, nil
}

// GitBlobID is git's id of a blob: the ETag of a file not in LFS.
func GitBlobID(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is the hex sha256: the ETag of an LFS file.
func SHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// ETag is the blob name huggingface_hub gives a file.
func (r *Repo) ETag(file string) string {
	if r.LFS[file] {
		return SHA256(r.Files[file])
	}
	return GitBlobID(r.Files[file])
}

func (f *Hub) serveHub(w http.ResponseWriter, req *http.Request) {
	f.Mu.Lock()
	f.log = append(f.log, "hub "+req.Method+" "+req.URL.EscapedPath())
	if a := req.Header.Get("Authorization"); a != "" {
		f.HubAuth = append(f.HubAuth, a)
	}
	fail := f.Fail
	f.Mu.Unlock()
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
		if rev := parts[3]; rev != "main" && rev != repo.Commit {
			w.Header().Set("X-Error-Code", "RevisionNotFound")
			http.Error(w, "Invalid rev id", http.StatusNotFound)
			return
		}
		type sib struct {
			RFilename string `json:"rfilename"`
		}
		var sibs []sib
		for name := range repo.Files {
			sibs = append(sibs, sib{name})
		}
		sort.Slice(sibs, func(i, j int) bool { return sibs[i].RFilename < sibs[j].RFilename })
		json.NewEncoder(w).Encode(map[string]any{"id": parts[0] + "/" + parts[1], "sha": repo.Commit, "siblings": sibs})
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
	if repo.Gated && req.Header.Get("Authorization") != "Bearer "+f.Token {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+parts[0]+"/"+parts[1]+" is restricted.")
		http.Error(w, "gated", http.StatusUnauthorized)
		return
	}
	if parts[3] != "main" && parts[3] != repo.Commit {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		http.Error(w, "Invalid rev id", http.StatusNotFound)
		return
	}
	file := parts[4]
	data, ok := repo.Files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", repo.Commit)
	if repo.LFS[file] {
		sum := SHA256(data)
		w.Header().Set("ETag", `"`+GitBlobID([]byte("pointer "+sum))+`"`) // the pointer file's id
		w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		w.Header().Set("Location", f.cdn.URL+"/lfs/"+sum+"?signed=1")
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+GitBlobID(data)+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		w.Write(data)
	}
}

func (f *Hub) repo(name string) *Repo {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.repos[name]
}

func (f *Hub) serveCDN(w http.ResponseWriter, req *http.Request) {
	sum := strings.TrimPrefix(req.URL.Path, "/lfs/")
	f.Mu.Lock()
	f.log = append(f.log, "cdn "+req.Method+" "+req.URL.Path+" range="+req.Header.Get("Range"))
	if a := req.Header.Get("Authorization"); a != "" {
		f.CDNAuth = append(f.CDNAuth, a)
	}
	var data []byte
	for _, r := range f.repos {
		for name, d := range r.Files {
			if r.LFS[name] && SHA256(d) == sum {
				data = d
			}
		}
	}
	var cut int64 = -1
	if c := f.Cut[sum]; len(c) > 0 {
		cut, f.Cut[sum] = c[0], c[1:]
	}
	corrupt, cdnFail, noRanges := f.Corrupt[sum], f.CDNFail, f.NoRanges
	f.Mu.Unlock()
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
