package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the Hub's address; $HF_ENDPOINT replaces it (a mirror).
const DefaultEndpoint = "https://huggingface.co"

// Client downloads from one Hub endpoint into one cache.
type Client struct {
	Endpoint string // e.g. https://huggingface.co, without a trailing slash
	Token    string // access token for gated and private repositories; "" for none
	CacheDir string // the huggingface_hub cache
	Offline  bool   // use the cache only (HF_HUB_OFFLINE=1)

	// Workers is how many files download at once (default 4).
	Workers int
	// Retries is how many times a cut download is resumed within one
	// call before giving up (0: 5; negative: none).
	Retries int
	// Progress receives progress: a bar on a terminal, else a plain line
	// every ProgressEvery (default 5 s). nil prints nothing.
	Progress io.Writer
	// ProgressEvery is the interval of the plain progress lines.
	ProgressEvery time.Duration
	// HTTP sends the requests (default: a client with connection and
	// header timeouts, no overall timeout). Its redirect policy is
	// replaced: the client follows redirects itself.
	HTTP *http.Client
}

// FromEnv returns a client configured as huggingface_hub is: HF_ENDPOINT,
// HF_TOKEN (else the file HF_TOKEN_PATH or $HF_HOME/token that
// `huggingface-cli login` writes), HF_HUB_CACHE / HF_HOME and
// HF_HUB_OFFLINE.
func FromEnv() *Client {
	c := &Client{
		Endpoint: strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/"),
		Token:    envToken(),
		CacheDir: CacheDir(),
		Offline:  envTrue(os.Getenv("HF_HUB_OFFLINE")),
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	return c
}

func envToken() string {
	for _, v := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if t := strings.TrimSpace(os.Getenv(v)); t != "" {
			return t
		}
	}
	p := os.Getenv("HF_TOKEN_PATH")
	if p == "" {
		p = filepath.Join(hfHome(), "token")
	}
	if data, err := os.ReadFile(expandHome(p)); err == nil {
		return strings.TrimSpace(string(data))
	}
	return ""
}

func envTrue(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// ErrAccess is matched (errors.Is) by a refusal for lack of access (HTTP
// 401 or 403: a gated or private repository); ErrNotFound by a missing
// repository, revision or file; ErrNotCached by an offline lookup that the
// cache cannot answer.
var (
	ErrAccess    = errors.New("access denied")
	ErrNotFound  = errors.New("not found")
	ErrNotCached = errors.New("not in the cache")
)

// HTTPError is an unexpected answer of the Hub.
type HTTPError struct {
	Status int
	Code   string // the Hub's X-Error-Code, e.g. GatedRepo, RepoNotFound
	URL    string
	Msg    string
}

func (e *HTTPError) Error() string { return e.Msg }

func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrAccess:
		return (e.Status == 401 || e.Status == 403) && e.Code != "RepoNotFound"
	case ErrNotFound:
		return e.Status == 404 || e.Code == "RepoNotFound"
	}
	return false
}

// httpError turns a failed response into a message that says what to do.
func (c *Client) httpError(resp *http.Response, repo, what string) error {
	code := resp.Header.Get("X-Error-Code")
	serverMsg := resp.Header.Get("X-Error-Message")
	e := &HTTPError{Status: resp.StatusCode, Code: code, URL: resp.Request.URL.String()}
	page := c.Endpoint + "/" + repo
	switch {
	case code == "RepoNotFound" || (resp.StatusCode == 404 && code == ""):
		e.Msg = fmt.Sprintf("%s: no model repository %s at %s (HTTP %d); check the name, or pass a token (--token or HF_TOKEN) if it is private", what, repo, c.Endpoint, resp.StatusCode)
	case code == "RevisionNotFound":
		e.Msg = fmt.Sprintf("%s: %s has no such revision (HTTP %d)", what, repo, resp.StatusCode)
	case code == "EntryNotFound":
		e.Msg = fmt.Sprintf("%s: no such file in %s (HTTP %d)", what, repo, resp.StatusCode)
	case resp.StatusCode == 401 || resp.StatusCode == 403:
		hint := "pass an access token with --token or HF_TOKEN (https://huggingface.co/settings/tokens)"
		if c.Token != "" {
			hint = "the token given has no access to it"
		}
		e.Msg = fmt.Sprintf("%s: access to %s is restricted (HTTP %d): accept the license at %s and %s", what, repo, resp.StatusCode, page, hint)
	case resp.StatusCode == 429:
		e.Msg = fmt.Sprintf("%s: the Hub is rate-limiting requests (HTTP 429); wait and run again, files already downloaded are kept", what)
	case resp.StatusCode >= 500:
		e.Msg = fmt.Sprintf("%s: server error HTTP %d from %s; run again later, files already downloaded are kept and the rest resumes", what, resp.StatusCode, resp.Request.URL.Host)
	default:
		e.Msg = fmt.Sprintf("%s: unexpected HTTP %d from %s", what, resp.StatusCode, resp.Request.URL.Host)
	}
	if serverMsg != "" {
		e.Msg += " (" + serverMsg + ")"
	}
	return e
}

func (c *Client) httpClient() *http.Client {
	base := c.HTTP
	if base == nil {
		base = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			MaxIdleConnsPerHost:   16,
			ForceAttemptHTTP2:     true,
		}}
	}
	hc := *base
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

func userAgent() string {
	return "jamba; go/" + strings.TrimPrefix(runtime.Version(), "go")
}

// send performs one request without following redirects. The token goes
// only to the endpoint's own host: a redirect to a storage or CDN host
// never sees it.
func (c *Client) send(ctx context.Context, hc *http.Client, method, u string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", userAgent())
	if c.Token != "" && c.sameHost(req.URL) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return hc.Do(req)
}

func (c *Client) sameHost(u *url.URL) bool {
	ep, err := url.Parse(c.Endpoint)
	return err == nil && strings.EqualFold(ep.Host, u.Host) && ep.Scheme == u.Scheme
}

// follow performs a request, following up to 10 redirects itself.
func (c *Client) follow(ctx context.Context, hc *http.Client, method, u string, header http.Header) (*http.Response, error) {
	for range 10 {
		resp, err := c.send(ctx, hc, method, u, header)
		if err != nil {
			return nil, err
		}
		loc := resp.Header.Get("Location")
		if !isRedirect(resp.StatusCode) || loc == "" {
			return resp, nil
		}
		next, err := resp.Request.URL.Parse(loc)
		drain(resp)
		if err != nil {
			return nil, fmt.Errorf("bad redirect from %s: %v", u, err)
		}
		u = next.String()
	}
	return nil, fmt.Errorf("%s: too many redirects", u)
}

func isRedirect(status int) bool {
	switch status {
	case 301, 302, 303, 307, 308:
		return true
	}
	return false
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// repoInfo is the answer of /api/models/{repo}/revision/{rev}.
type repoInfo struct {
	SHA      string `json:"sha"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
	} `json:"siblings"`
}

// revisionInfo asks the Hub which commit a revision is at and which files
// it holds.
func (c *Client) revisionInfo(ctx context.Context, hc *http.Client, ref Ref) (commit string, files []string, err error) {
	u := fmt.Sprintf("%s/api/models/%s/revision/%s", c.Endpoint, ref.Repo, url.PathEscape(ref.Revision))
	resp, err := c.follow(ctx, hc, http.MethodGet, u, nil)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", ref.Repo, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, c.httpError(resp, ref.Repo, ref.String())
	}
	var info repoInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&info); err != nil {
		return "", nil, fmt.Errorf("%s: the Hub's file list is not valid JSON: %v", ref, err)
	}
	if !isCommit(info.SHA) {
		return "", nil, fmt.Errorf("%s: the Hub answered commit %q, not a 40-digit hash", ref, info.SHA)
	}
	for _, s := range info.Siblings {
		files = append(files, s.RFilename)
	}
	return info.SHA, files, nil
}

// fileMeta is what a HEAD of resolve/{commit}/{file} says about a file.
type fileMeta struct {
	repo   string
	file   string
	commit string
	etag   string // the blob name: sha256 for LFS files, git blob id otherwise
	size   int64
	url    string // where to GET the bytes (a CDN after a redirect)
}

func resolveURL(endpoint, repo, rev, file string) string {
	parts := strings.Split(file, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return fmt.Sprintf("%s/%s/resolve/%s/%s", endpoint, repo, url.PathEscape(rev), strings.Join(parts, "/"))
}

// head reads a file's metadata as huggingface_hub does: a HEAD that follows
// redirects within the endpoint's host (a renamed repository) and stops at
// one to another host (the LFS storage), taking X-Linked-Etag and
// X-Linked-Size before ETag and Content-Length.
func (c *Client) head(ctx context.Context, hc *http.Client, repo, commit, file string) (fileMeta, error) {
	u := resolveURL(c.Endpoint, repo, commit, file)
	h := http.Header{"Accept-Encoding": {"identity"}}
	for range 10 {
		resp, err := c.send(ctx, hc, http.MethodHead, u, h)
		if err != nil {
			return fileMeta{}, fmt.Errorf("%s: %w", file, err)
		}
		resp.Body.Close()
		if isRedirect(resp.StatusCode) {
			next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				return fileMeta{}, fmt.Errorf("%s: bad redirect: %v", file, err)
			}
			if next.Host == resp.Request.URL.Host && resp.Header.Get("X-Linked-Etag") == "" {
				u = next.String()
				continue
			}
			return c.metaFrom(resp, repo, file, commit, next.String())
		}
		if resp.StatusCode != http.StatusOK {
			return fileMeta{}, c.httpError(resp, repo, repo+"/"+file)
		}
		return c.metaFrom(resp, repo, file, commit, u)
	}
	return fileMeta{}, fmt.Errorf("%s: too many redirects", file)
}

func (c *Client) metaFrom(resp *http.Response, repo, file, commit, download string) (fileMeta, error) {
	m := fileMeta{repo: repo, file: file, commit: commit, url: download}
	if rc := resp.Header.Get("X-Repo-Commit"); rc != "" && rc != commit {
		return m, fmt.Errorf("%s: the Hub served commit %s where %s was asked", file, rc, commit)
	}
	m.etag = normalizeETag(resp.Header.Get("X-Linked-Etag"))
	if m.etag == "" {
		m.etag = normalizeETag(resp.Header.Get("ETag"))
	}
	if m.etag == "" || strings.ContainsAny(m.etag, "/\\\x00") || m.etag == "." || m.etag == ".." {
		return m, fmt.Errorf("%s: the Hub sent no usable ETag (%q): cannot place the file in the cache", file, m.etag)
	}
	size := resp.Header.Get("X-Linked-Size")
	if size == "" {
		size = resp.Header.Get("Content-Length")
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 {
		return m, fmt.Errorf("%s: the Hub sent no file size (%q)", file, size)
	}
	m.size = n
	return m, nil
}

// normalizeETag drops a weak marker and quotes: W/"abc" → abc.
func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}
