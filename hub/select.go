package hub

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// modelFiles are the files beside the weights that loading, tokenizing and
// chatting read. Other files of a repository (READMEs, PyTorch or ONNX
// weights, images) are not downloaded.
var modelFiles = []string{
	"config.json",
	"generation_config.json",
	"tokenizer.json",
	"tokenizer_config.json",
	"special_tokens_map.json",
	"chat_template.jinja",
	"chat_template.json",
}

const safetensorsIndex = "model.safetensors.index.json"

// DefaultQuant is the GGUF quantization chosen when a reference to a GGUF
// repository names none, as llama.cpp does; without it the first file is
// taken.
const DefaultQuant = "Q4_K_M"

// plan is what to download from a repository.
type plan struct {
	files []string // repository paths, in order
	gguf  string   // the GGUF file to open (its first part when split), or ""
	index bool     // files include the safetensors index; its shards come next
}

// selectFiles picks the files a model needs from a repository's listing.
// A reference with a quantization or a file name, or a repository without
// safetensors weights, selects GGUF files.
func selectFiles(ref Ref, listing []string) (plan, error) {
	have := map[string]bool{}
	for _, f := range listing {
		have[f] = true
	}
	var safetensors, ggufs []string
	for _, f := range listing {
		lf := strings.ToLower(f)
		switch {
		case !strings.Contains(f, "/") && strings.HasSuffix(lf, ".safetensors"):
			safetensors = append(safetensors, f)
		case strings.HasSuffix(lf, ".gguf") && !strings.Contains(lf, "mmproj"):
			ggufs = append(ggufs, f)
		}
	}
	sort.Strings(safetensors)
	sort.Strings(ggufs)
	if ref.Quant != "" || ref.File != "" || (len(safetensors) == 0 && len(ggufs) > 0) {
		return selectGGUF(ref, ggufs)
	}
	var p plan
	for _, f := range modelFiles {
		if have[f] {
			p.files = append(p.files, f)
		}
	}
	if !have["config.json"] {
		return plan{}, fmt.Errorf("%s has no config.json: it is not a transformers model repository", ref.Repo)
	}
	switch {
	case have[safetensorsIndex]:
		p.files = append(p.files, safetensorsIndex)
		p.index = true
	case have["model.safetensors"]:
		p.files = append(p.files, "model.safetensors")
	case len(safetensors) > 0:
		p.files = append(p.files, safetensors...)
	default:
		return plan{}, fmt.Errorf("%s has no safetensors weights and no GGUF file (jamba does not read PyTorch .bin checkpoints)", ref.Repo)
	}
	return p, nil
}

var splitRE = regexp.MustCompile(`-(\d{5})-of-(\d{5})\.gguf$`)

// selectGGUF picks one GGUF model (all its parts when split).
func selectGGUF(ref Ref, ggufs []string) (plan, error) {
	if len(ggufs) == 0 {
		return plan{}, fmt.Errorf("%s has no GGUF files", ref.Repo)
	}
	var chosen string
	switch {
	case ref.File != "":
		for _, f := range ggufs {
			if f == ref.File || path.Base(f) == ref.File {
				chosen = f
				break
			}
		}
		if chosen == "" {
			return plan{}, fmt.Errorf("%s has no file %s; its GGUF files: %s", ref.Repo, ref.File, strings.Join(ggufs, ", "))
		}
	case ref.Quant != "":
		chosen = matchQuant(ggufs, ref.Quant)
		if chosen == "" {
			return plan{}, fmt.Errorf("%s has no GGUF file of quantization %s; it has: %s", ref.Repo, ref.Quant, strings.Join(quants(ggufs), ", "))
		}
	default:
		if chosen = matchQuant(ggufs, DefaultQuant); chosen == "" {
			chosen = ggufs[0]
		}
	}
	p := plan{gguf: chosen}
	m := splitRE.FindStringSubmatchIndex(chosen)
	if m == nil {
		p.files = []string{chosen}
		return p, nil
	}
	prefix, count := chosen[:m[0]], chosen[m[4]:m[5]]
	for _, f := range ggufs {
		if sm := splitRE.FindStringSubmatchIndex(f); sm != nil && f[:sm[0]] == prefix && f[sm[4]:sm[5]] == count {
			p.files = append(p.files, f)
		}
	}
	p.gguf = p.files[0]
	return p, nil
}

// matchQuant returns the first file whose name carries the quantization
// tag between separators ("x-Q4_K_M.gguf", "x.q8_0.gguf"; "Q4_K" does not
// match "Q4_K_M").
func matchQuant(ggufs []string, quant string) string {
	q := strings.ToUpper(quant)
	for _, f := range ggufs {
		name := strings.ToUpper(path.Base(f))
		for i := 0; ; {
			j := strings.Index(name[i:], q)
			if j < 0 {
				break
			}
			j += i
			before := j == 0 || strings.ContainsRune("-._", rune(name[j-1]))
			k := j + len(q)
			after := k < len(name) && strings.ContainsRune("-.", rune(name[k]))
			if before && after {
				return f
			}
			i = j + 1
		}
	}
	return ""
}

var quantRE = regexp.MustCompile(`(?i)(?:^|[-._])((?:I?Q\d+(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?:[-.])`)

// quants lists the quantization tags found in file names, for messages.
func quants(ggufs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range ggufs {
		if m := quantRE.FindStringSubmatch(path.Base(f)); m != nil && !seen[strings.ToUpper(m[1])] {
			seen[strings.ToUpper(m[1])] = true
			out = append(out, strings.ToUpper(m[1]))
		}
	}
	if len(out) == 0 {
		return ggufs
	}
	return out
}

// indexShards reads the shard names of a safetensors index, refusing any
// that could name a file outside the repository's top level.
func indexShards(name string, data []byte) ([]string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: weight_map is empty", name)
	}
	seen := map[string]bool{}
	var shards []string
	for tensor, f := range idx.WeightMap {
		if f == "" || strings.ContainsAny(f, "/\\\x00") || f == "." || f == ".." || !strings.HasSuffix(f, ".safetensors") {
			return nil, fmt.Errorf("%s: tensor %s names shard %q, not a .safetensors file beside the index", name, tensor, f)
		}
		if !seen[f] {
			seen[f] = true
			shards = append(shards, f)
		}
	}
	sort.Strings(shards)
	return shards, nil
}
