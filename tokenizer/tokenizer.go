package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/jamba-go/jamba/internal/safefile"
)

// Tokenizer encodes text to token ids and decodes ids to text. It is built
// from a Hugging Face tokenizer.json (and optionally tokenizer_config.json)
// and is safe for concurrent use.
type Tokenizer struct {
	model      *bpe
	normalizer normalizer // nil: none
	preSteps   []preTokenizer
	post       postProcessor // nil: none
	decoder    decoder       // nil: tokens joined with spaces

	added   *addedVocab
	vocab   map[string]int // model vocab plus added tokens
	idToTok []string       // index id; "" with hasTok false for holes
	hasTok  []bool
	special []bool // index id

	bos, eos       int
	hasBOS, hasEOS bool

	// byteLevel is true when the last pre-tokenizer step is ByteLevel: the
	// byte-to-character mapping is then done by the model on the fly.
	byteLevel bool

	// byteFallbackDecode and byteLevelDecode tell whether the decoder chain
	// contains ByteFallback and ByteLevel.
	byteFallbackDecode bool
	byteLevelDecode    bool

	// gg is set for a tokenizer made from GGUF metadata (FromGGUF).
	gg *ggVocab
}

// Load reads the tokenizer.json at path, and tokenizer_config.json from the
// same directory when it exists.
func Load(path string) (*Tokenizer, error) {
	data, err := safefile.ReadFile(path, safefile.MaxTokenizer)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	cfg, err := safefile.ReadFile(cfgPath, safefile.MaxConfig)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		cfg = nil
	}
	t, err := load(data, cfg)
	if err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("tokenizer: %s: %v", cfgPath, ce.err)
		}
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t, nil
}

// LoadBytes builds a tokenizer from the contents of a tokenizer.json and,
// when tokenizerConfigJSON is not nil, of a tokenizer_config.json.
func LoadBytes(tokenizerJSON, tokenizerConfigJSON []byte) (*Tokenizer, error) {
	t, err := load(tokenizerJSON, tokenizerConfigJSON)
	if err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("tokenizer: tokenizer_config.json: %v", ce.err)
		}
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	return t, nil
}

type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }

type fileJSON struct {
	Version       json.RawMessage  `json:"version"`
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Truncation    json.RawMessage  `json:"truncation"`
	Padding       json.RawMessage  `json:"padding"`
}

type addedTokenJSON struct {
	ID         *int    `json:"id"`
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized *bool   `json:"normalized"`
	Special    bool    `json:"special"`
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func load(data, cfgData []byte) (*Tokenizer, error) {
	f, m, err := loadModel(data)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{model: m}
	if !isNull(f.Normalizer) {
		if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
			return nil, fmt.Errorf("field normalizer: %w", err)
		}
	}
	if !isNull(f.PreTokenizer) {
		if t.preSteps, err = parsePreTokenizer(f.PreTokenizer); err != nil {
			return nil, fmt.Errorf("field pre_tokenizer: %w", err)
		}
	}
	if n := len(t.preSteps); n > 0 {
		if bl, ok := t.preSteps[n-1].(*byteLevelPre); ok {
			bl.mapInModel = true
			t.byteLevel = true
		}
	}
	if !isNull(f.Decoder) {
		if t.decoder, err = parseDecoder(f.Decoder); err != nil {
			return nil, fmt.Errorf("field decoder: %w", err)
		}
		t.byteFallbackDecode = hasByteFallback(t.decoder)
		t.byteLevelDecode = hasByteLevel(t.decoder)
	}

	var cfg *tokenizerConfig
	if cfgData != nil {
		if cfg, err = parseConfig(cfgData); err != nil {
			return nil, &configError{err}
		}
	}

	// Vocabulary: model vocab plus added tokens.
	tokens := f.AddedTokens
	if cfg != nil {
		tokens = mergeConfigAddedTokens(tokens, cfg)
	}
	if err := t.buildVocab(tokens); err != nil {
		return nil, err
	}
	if t.byteLevel {
		t.model.initByteLevel()
	}
	t.model.initChunking(t.byteLevel)

	if !isNull(f.PostProcessor) {
		if t.post, err = parsePostProcessor(f.PostProcessor, t); err != nil {
			return nil, fmt.Errorf("field post_processor: %w", err)
		}
	}
	if err := t.applyConfig(cfg); err != nil {
		return nil, &configError{err}
	}
	return t, nil
}

// loadModel reads the document and its model, by the fast path when it
// can (fastload.go), else with encoding/json, which also words every error.
func loadModel(data []byte) (fileJSON, *bpe, error) {
	if f, m, err := fastLoad(data); err == nil {
		return f, m, nil
	}
	return slowModel(data)
}

// slowModel is loadModel with encoding/json alone: the reference.
func slowModel(data []byte) (fileJSON, *bpe, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return f, nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if isNull(f.Model) {
		return f, nil, errors.New("field model: missing")
	}
	m, err := parseModel(f.Model)
	if err != nil {
		return f, nil, fmt.Errorf("field model: %w", err)
	}
	return f, m, nil
}

func (t *Tokenizer) buildVocab(tokens []addedTokenJSON) error {
	m := t.model
	modelSize := len(m.vocab)
	maxID := len(m.tokens) - 1 // the largest id of the model vocab (indexVocab)
	type entry struct {
		tok addedToken
		id  int
	}
	var list []entry
	byContent := map[string]int{}
	byID := map[int]string{}
	newCount := 0
	for i, a := range tokens {
		if a.ID == nil {
			return fmt.Errorf("field added_tokens[%d].id: missing", i)
		}
		if a.Content == nil {
			return fmt.Errorf("field added_tokens[%d].content: missing", i)
		}
		id, content := *a.ID, *a.Content
		if content == "" {
			return fmt.Errorf("field added_tokens[%d].content: empty", i)
		}
		if id < 0 {
			return fmt.Errorf("field added_tokens[%d].id: negative id %d", i, id)
		}
		if prev, ok := byContent[content]; ok {
			if prev != id {
				return fmt.Errorf("field added_tokens[%d]: token %q has two ids, %d and %d", i, content, prev, id)
			}
			continue
		}
		if prev, ok := byID[id]; ok {
			return fmt.Errorf("field added_tokens[%d]: id %d has two contents, %q and %q", i, id, prev, content)
		}
		if mid, ok := m.vocab[content]; ok {
			if mid != id {
				return fmt.Errorf("field added_tokens[%d]: token %q has id %d but the model vocab gives it %d", i, content, id, mid)
			}
		} else {
			if _, clash := m.idToTok(id); clash {
				return fmt.Errorf("field added_tokens[%d]: id %d of %q is already the model token %q", i, id, content, m.tokens[id])
			}
			newCount++
		}
		byContent[content] = id
		byID[id] = content
		norm := !a.Special
		if a.Normalized != nil {
			norm = *a.Normalized
		}
		list = append(list, entry{addedToken{content: content, id: id, singleWord: a.SingleWord,
			lstrip: a.LStrip, rstrip: a.RStrip, normalized: norm, special: a.Special}, id})
	}
	limit := modelSize + newCount
	if maxID+1 > limit {
		limit = maxID + 1
	}
	for _, e := range list {
		if _, inModel := m.vocab[e.tok.content]; !inModel && e.id >= limit {
			return fmt.Errorf("field added_tokens: id %d of %q is not below the vocabulary size %d", e.id, e.tok.content, limit)
		}
	}
	size := maxID + 1
	for _, e := range list {
		if e.id+1 > size {
			size = e.id + 1
		}
	}
	t.idToTok = make([]string, size)
	t.hasTok = make([]bool, size)
	t.special = make([]bool, size)
	copy(t.idToTok, m.tokens)
	copy(t.hasTok, m.has)
	if newCount == 0 {
		// Every added token is a model token with the same id: the
		// model's map is the whole vocabulary (neither changes after
		// loading).
		t.vocab = m.vocab
	} else {
		t.vocab = make(map[string]int, modelSize+newCount)
		for tok, id := range m.vocab {
			t.vocab[tok] = id
		}
	}
	var added []addedToken
	for _, e := range list {
		t.vocab[e.tok.content] = e.id
		t.idToTok[e.id] = e.tok.content
		t.hasTok[e.id] = true
		t.special[e.id] = e.tok.special
		added = append(added, e.tok)
	}
	var err error
	t.added, err = newAddedVocab(added, t.normalizer)
	return err
}

// Encode returns the token ids of text. With addSpecial the post-processor
// adds its special tokens (BOS and the like). Added tokens in the text
// (special or not) are always recognized.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	ids := t.encodeRaw(text, nil, nil)
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids
}

// EncodeTokens is Encode returning the token strings too. As in Hugging
// Face's Encoding, an added token's string is the text it matched, with the
// whitespace lstrip and rstrip took.
func (t *Tokenizer) EncodeTokens(text string, addSpecial bool) ([]int, []string) {
	var toks []string
	ids := t.encodeRaw(text, nil, &toks)
	if addSpecial && t.post != nil {
		n := len(ids)
		withSpecial := t.post.process(ids)
		if len(withSpecial) != n {
			pre := withSpecial[:len(withSpecial)-n]
			if tp, ok := t.post.(*templateProcessor); ok {
				pre = tp.prefix
			}
			var all []string
			for _, id := range pre {
				s, _ := t.IDToToken(id)
				all = append(all, s)
			}
			all = append(all, toks...)
			for _, id := range withSpecial[len(pre)+n:] {
				s, _ := t.IDToToken(id)
				all = append(all, s)
			}
			toks = all
		}
		ids = withSpecial
	}
	return ids, toks
}

// parallelThreshold is the segment size in bytes above which encoding is
// spread over several goroutines.
const parallelThreshold = 1 << 16

// encodeRaw encodes without post-processing. When toks is not nil the token
// strings are appended to it.
func (t *Tokenizer) encodeRaw(text string, out []int, toks *[]string) []int {
	return t.encodeRawPlain(text, nil, out, toks)
}

// encodeRawPlain is encodeRaw where no added token may match across the
// ranges of plain (cleaned by cleanSpans; nil for none).
func (t *Tokenizer) encodeRawPlain(text string, plain []Span, out []int, toks *[]string) []int {
	if out == nil {
		out = make([]int, 0, len(text)/3+4)
	}
	for _, seg := range t.added.splitRaw(text, plain) {
		if seg.id >= 0 {
			out = append(out, seg.id)
			if toks != nil {
				*toks = append(*toks, seg.text)
			}
			continue
		}
		s := seg.text
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		var nplain []Span
		if len(plain) > 0 && t.added != nil && t.added.norm != nil {
			nplain = t.normalizedSpans(seg.text, s, segmentSpans(plain, seg.start, seg.start+len(seg.text)))
		}
		for _, nseg := range t.added.splitNormalized(s, seg.start == 0, nplain) {
			if nseg.id >= 0 {
				out = append(out, nseg.id)
				if toks != nil {
					*toks = append(*toks, nseg.text)
				}
				continue
			}
			n := len(out)
			out = t.encodeSegment(nseg.text, nseg.first, out)
			if toks != nil {
				for _, id := range out[n:] {
					s, _ := t.IDToToken(id)
					*toks = append(*toks, s)
				}
			}
		}
	}
	return out
}

// encodeSegment pre-tokenizes a normalized segment and runs the model.
func (t *Tokenizer) encodeSegment(s string, first bool, out []int) []int {
	if s == "" {
		return out
	}
	if t.gg != nil && t.gg.spm {
		return t.spmEncode(s, out)
	}
	pieces := []piece{{s, first}}
	for _, st := range t.preSteps {
		pieces = st.split(pieces)
	}
	pieces = t.model.chunk(pieces)
	workers := runtime.GOMAXPROCS(0)
	if workers > 8 {
		workers = 8
	}
	if len(s) < parallelThreshold || workers < 2 || len(pieces) < 2*workers {
		for _, p := range pieces {
			out = t.model.encodePiece(p.s, t.byteLevel, out)
		}
		return out
	}
	// Split the pieces into byte-balanced ranges and encode them in parallel.
	total := 0
	for _, p := range pieces {
		total += len(p.s)
	}
	per := total/workers + 1
	var bounds []int
	bounds = append(bounds, 0)
	acc := 0
	for i, p := range pieces {
		acc += len(p.s)
		if acc >= per && len(bounds) < workers {
			bounds = append(bounds, i+1)
			acc = 0
		}
	}
	if bounds[len(bounds)-1] != len(pieces) {
		bounds = append(bounds, len(pieces))
	}
	results := make([][]int, len(bounds)-1)
	var wg sync.WaitGroup
	for w := 0; w+1 < len(bounds); w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			part := pieces[bounds[w]:bounds[w+1]]
			n := 0
			for _, p := range part {
				n += len(p.s)
			}
			r := make([]int, 0, n/3+4)
			for _, p := range part {
				r = t.model.encodePiece(p.s, t.byteLevel, r)
			}
			results[w] = r
		}(w)
	}
	wg.Wait()
	for _, r := range results {
		out = append(out, r...)
	}
	return out
}

// VocabSize returns the number of ids: one more than the largest id of the
// model vocabulary and the added tokens.
func (t *Tokenizer) VocabSize() int { return len(t.idToTok) }

// TokenToID returns the id of a token string (model vocabulary or added token).
func (t *Tokenizer) TokenToID(tok string) (int, bool) {
	id, ok := t.vocab[tok]
	return id, ok
}

// IDToToken returns the token string of an id.
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.idToTok) || !t.hasTok[id] {
		return "", false
	}
	return t.idToTok[id], true
}

// BOS returns the beginning-of-sequence id: the bos_token of
// tokenizer_config.json, else the first special token the post-processor
// adds, else an added special token with a conventional BOS name.
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.hasBOS }

// EOS returns the end-of-sequence id: the eos_token of tokenizer_config.json,
// else a special token the post-processor appends, else an added special
// token with a conventional EOS name.
func (t *Tokenizer) EOS() (int, bool) { return t.eos, t.hasEOS }

// IsSpecial reports whether id is an added token marked special; such tokens
// are dropped by Decode with skipSpecial.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// SpecialTokens returns the ids of all special added tokens, ascending.
func (t *Tokenizer) SpecialTokens() []int {
	var ids []int
	for id, s := range t.special {
		if s {
			ids = append(ids, id)
		}
	}
	return ids
}

// Decode returns the text of ids. With skipSpecial, special added tokens are
// left out. Ids outside the vocabulary are ignored, as Hugging Face does.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	if t.gg != nil {
		return t.ggDecode(ids, skipSpecial)
	}
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		tok, ok := t.IDToToken(id)
		if !ok || (skipSpecial && t.special[id]) {
			continue
		}
		toks = append(toks, tok)
	}
	return t.decodeTokens(toks)
}

func (t *Tokenizer) decodeTokens(toks []string) string {
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	toks = t.decoder.decode(toks)
	return strings.Join(toks, "")
}

var bosNames = []string{"<|startoftext|>", "<s>", "<bos>", "<|begin_of_text|>", "[CLS]", "<|bos|>"}
var eosNames = []string{"<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]", "<|eos|>", "<|im_end|>"}

// applyConfig applies tokenizer_config.json and resolves BOS and EOS.
func (t *Tokenizer) applyConfig(cfg *tokenizerConfig) error {
	bosSet, eosSet := false, false
	if cfg != nil {
		if cfg.bos != nil {
			bosSet = true
			if *cfg.bos != "" {
				id, ok := t.vocab[*cfg.bos]
				if !ok {
					return fmt.Errorf("field bos_token: %q is not in the vocabulary", *cfg.bos)
				}
				t.bos, t.hasBOS = id, true
			}
		}
		if cfg.eos != nil {
			eosSet = true
			if *cfg.eos != "" {
				id, ok := t.vocab[*cfg.eos]
				if !ok {
					return fmt.Errorf("field eos_token: %q is not in the vocabulary", *cfg.eos)
				}
				t.eos, t.hasEOS = id, true
			}
		}
	}
	tp, _ := t.post.(*templateProcessor)
	if !bosSet {
		if tp != nil && len(tp.prefix) > 0 {
			t.bos, t.hasBOS = tp.prefix[0], true
		} else if id, ok := t.findSpecial(bosNames); ok {
			t.bos, t.hasBOS = id, true
		}
	}
	if !eosSet {
		if tp != nil && len(tp.suffix) > 0 {
			t.eos, t.hasEOS = tp.suffix[len(tp.suffix)-1], true
		} else if id, ok := t.findSpecial(eosNames); ok {
			t.eos, t.hasEOS = id, true
		}
	}
	if cfg != nil && (cfg.addBOS != nil || cfg.addEOS != nil) {
		addBOS := tp != nil && len(tp.prefix) > 0
		addEOS := tp != nil && len(tp.suffix) > 0
		if cfg.addBOS != nil {
			addBOS = *cfg.addBOS
		}
		if cfg.addEOS != nil {
			addEOS = *cfg.addEOS
		}
		np := &templateProcessor{}
		if addBOS {
			if !t.hasBOS {
				return errors.New("field add_bos_token: true but there is no bos_token")
			}
			np.prefix = []int{t.bos}
		}
		if addEOS {
			if !t.hasEOS {
				return errors.New("field add_eos_token: true but there is no eos_token")
			}
			np.suffix = []int{t.eos}
		}
		t.post = np
	}
	return nil
}

func (t *Tokenizer) findSpecial(names []string) (int, bool) {
	for _, n := range names {
		if id, ok := t.vocab[n]; ok && t.special[id] {
			return id, true
		}
	}
	return 0, false
}

// tokenizerConfig is the part of tokenizer_config.json used here.
type tokenizerConfig struct {
	addBOS, addEOS *bool
	bos, eos       *string // "" means explicitly null
	added          []addedTokenJSON
}

func parseConfig(data []byte) (*tokenizerConfig, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	c := &tokenizerConfig{}
	for _, k := range []string{"add_bos_token", "add_eos_token"} {
		v, ok := raw[k]
		if !ok || isNull(v) {
			continue
		}
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return nil, fmt.Errorf("field %s: not a boolean", k)
		}
		if k == "add_bos_token" {
			c.addBOS = &b
		} else {
			c.addEOS = &b
		}
	}
	for _, k := range []string{"bos_token", "eos_token"} {
		v, ok := raw[k]
		if !ok {
			continue
		}
		s, err := tokenContent(v)
		if err != nil {
			return nil, fmt.Errorf("field %s: %v", k, err)
		}
		if k == "bos_token" {
			c.bos = &s
		} else {
			c.eos = &s
		}
	}
	if v, ok := raw["added_tokens_decoder"]; ok && !isNull(v) {
		var m map[string]addedTokenJSON
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, fmt.Errorf("field added_tokens_decoder: %v", err)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a := m[k]
			var id int
			if _, err := fmt.Sscanf(k, "%d", &id); err != nil || fmt.Sprint(id) != k {
				return nil, fmt.Errorf("field added_tokens_decoder: key %q is not an id", k)
			}
			a.ID = &id
			c.added = append(c.added, a)
		}
	}
	return c, nil
}

// tokenContent reads a special token given as a string, an AddedToken
// object with a content field, or null (returned as "").
func tokenContent(v json.RawMessage) (string, error) {
	if isNull(v) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(v, &obj); err != nil || obj.Content == nil {
		return "", errors.New("neither a string nor an object with a content field")
	}
	return *obj.Content, nil
}

// mergeConfigAddedTokens adds the tokens of added_tokens_decoder that
// tokenizer.json lacks (by content), as transformers does.
func mergeConfigAddedTokens(tokens []addedTokenJSON, cfg *tokenizerConfig) []addedTokenJSON {
	have := map[string]bool{}
	for _, a := range tokens {
		if a.Content != nil {
			have[*a.Content] = true
		}
	}
	out := tokens
	for _, a := range cfg.added {
		if a.Content == nil || have[*a.Content] {
			continue
		}
		out = append(out[:len(out):len(out)], a)
		have[*a.Content] = true
	}
	return out
}
