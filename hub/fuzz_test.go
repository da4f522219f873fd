package hub

import (
	"strings"
	"testing"
)

// FuzzIndexShards feeds arbitrary safetensors indexes (downloaded, so
// untrusted): no panic, and every shard accepted is a plain .safetensors
// name that cannot leave the snapshot folder.
func FuzzIndexShards(f *testing.F) {
	f.Add([]byte(`{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../x.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		shards, err := indexShards("index.json", data)
		if err != nil {
			return
		}
		for _, s := range shards {
			if strings.ContainsAny(s, "/\\\x00") || !strings.HasSuffix(s, ".safetensors") {
				t.Fatalf("accepted shard %q", s)
			}
		}
	})
}

// FuzzParseRef: no panic, and an accepted reference is one that cannot
// name a path outside the cache (no "..", no "--" in the repository, a
// revision without empty, "." or ".." parts).
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"org/name", "org/name@v1:Q4_K_M", "org/name@refs/pr/1", "a/b:c.gguf", "../x", "a/b@.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		if strings.Count(r.Repo, "/") != 1 || strings.Contains(r.Repo, "..") || strings.Contains(r.Repo, "--") {
			t.Fatalf("accepted repository %q", r.Repo)
		}
		for _, p := range strings.Split(r.Revision, "/") {
			if p == "" || p == "." || p == ".." {
				t.Fatalf("accepted revision %q", r.Revision)
			}
		}
		if again, err := ParseRef(r.String()); err != nil || again != r {
			t.Fatalf("%q: String %q parses to %+v, %v", s, r.String(), again, err)
		}
	})
}
