// Package hub downloads models from the Hugging Face Hub (or a mirror) into
// the cache that huggingface_hub keeps, and finds them there again.
//
// The cache is shared with huggingface_hub, transformers and llama.cpp: a
// model fetched by any of them is found here without a download, and the
// other way round. Its layout, under $HF_HUB_CACHE (or $HF_HOME/hub, or
// ~/.cache/huggingface/hub):
//
//	models--ORG--NAME/
//	  blobs/ETAG                       file contents, named by their ETag
//	  blobs/ETAG.incomplete            a download in progress (resumed by Range)
//	  refs/REVISION                    the commit a branch or tag pointed to
//	  snapshots/COMMIT/FILE            relative symlink to ../../blobs/ETAG
//	.locks/models--ORG--NAME/ETAG.lock one lock per blob being written
//
// A blob only appears under its final name once its size and hash (sha256
// for LFS files, the git blob id for the others) match what the server
// announced, and a snapshot link only once its blob is there, so an
// interrupted download never leaves a half-written file where readers look.
package hub

import (
	"fmt"
	"regexp"
	"strings"
)

// Ref names a model on the Hub: "org/name", optionally "@revision" (branch,
// tag or commit) and ":QUANT" (a GGUF quantization, e.g. Q4_K_M) or
// ":FILE.gguf" (one GGUF file of the repository), as llama.cpp's -hf does.
type Ref struct {
	Repo     string // "org/name"
	Revision string // "main" when not given
	Quant    string // GGUF quantization tag, "" for none
	File     string // GGUF file name, "" for none
}

// DefaultRevision is the branch used when a reference names none.
const DefaultRevision = "main"

var (
	repoPart = `[A-Za-z0-9][A-Za-z0-9._-]{0,95}`
	refRE    = regexp.MustCompile(`^(` + repoPart + `/` + repoPart + `)(?:@([^:\s]+))?(?::([^\s/]+))?$`)
)

// ParseRef parses "org/name[@revision][:QUANT|:FILE.gguf]".
func ParseRef(s string) (Ref, error) {
	m := refRE.FindStringSubmatch(s)
	if m == nil {
		return Ref{}, fmt.Errorf("%q is not a Hugging Face model name: want org/name, org/name@revision or org/name:QUANT", s)
	}
	r := Ref{Repo: m[1], Revision: m[2], Quant: m[3]}
	if strings.Contains(r.Repo, "--") || strings.Contains(r.Repo, "..") || strings.HasSuffix(r.Repo, ".") {
		return Ref{}, fmt.Errorf("%q is not a valid repository name (no \"--\" or \"..\", no trailing \".\")", r.Repo)
	}
	if r.Revision == "" {
		r.Revision = DefaultRevision
	}
	if err := checkRevision(r.Revision); err != nil {
		return Ref{}, err
	}
	if strings.HasSuffix(strings.ToLower(r.Quant), ".gguf") {
		r.File, r.Quant = r.Quant, ""
	}
	return r, nil
}

// checkRevision refuses revisions that could escape refs/ when used as a
// path.
func checkRevision(rev string) error {
	for _, part := range strings.Split(rev, "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "\\\x00") {
			return fmt.Errorf("revision %q is not valid", rev)
		}
	}
	return nil
}

// LooksLikeRef reports whether s has the form of a Hub model name. Callers
// check first that s is not a local path.
func LooksLikeRef(s string) bool {
	_, err := ParseRef(s)
	return err == nil
}

// String formats the reference as ParseRef reads it.
func (r Ref) String() string {
	s := r.Repo
	if r.Revision != "" && r.Revision != DefaultRevision {
		s += "@" + r.Revision
	}
	switch {
	case r.File != "":
		s += ":" + r.File
	case r.Quant != "":
		s += ":" + r.Quant
	}
	return s
}

// isCommit reports whether rev is a full commit hash.
func isCommit(rev string) bool {
	return len(rev) == 40 && isHex(rev)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}
