package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/safetensors"
)

// A training folder (--output) holds the newest complete save at its top,
// as a Hugging Face checkpoint that transformers and jamba load, and every
// save whole in checkpoints/step-NNNNNNNN/:
//
//	DIR/model.safetensors, config.json, tokenizer files, optimizer.safetensors,
//	    metrics.csv, loss.png   hard links to the files of the newest save
//	DIR/manifest.json           that save's manifest, written last
//	DIR/checkpoints/step-00000040/  the newest save, complete
//	DIR/checkpoints/step-00000030/  the save before it
//
// A save writes every file into a new hidden folder, syncs each file,
// writes the manifest (the step and every file's size and SHA-256), syncs
// the folder and renames it to step-N: a step folder is complete or absent.
// Then each file is linked to the top (a link to a temporary name renamed
// over the old file) and the top manifest replaced, last. Saves older than
// the previous one are removed.
//
// A resume verifies the top against its manifest. When a save was cut
// short (a kill, a full disk) the top may hold files of two saves: the
// resume then names the step of each file and continues from the newest
// step folder that verifies; with none, it refuses.

const (
	manifestFile   = "manifest.json"
	checkpointsDir = "checkpoints"
	manifestFormat = "jamba-train-checkpoint"
	// stepMetaKey is model.safetensors' metadata key for the step it was
	// saved at, so that a mixed folder can name each file's step.
	stepMetaKey = "jamba_step"
)

// keepSaves is the number of complete saves kept in checkpoints/.
const keepSaves = 2

// manifest lists the files of one save.
type manifest struct {
	Format string          `json:"format"`
	Step   int             `json:"step"`
	Seq    int64           `json:"seq"` // saves of this folder, in order (prunes and fallbacks go by it)
	Files  []manifestEntry `json:"files"`
}

type manifestEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// saveHook, when set (by tests), is called at named points of a save; an
// error it returns ends the save there, as a crash would (nothing is
// cleaned up).
var saveHook func(point string) error

func hook(point string) error {
	if saveHook != nil {
		return saveHook(point)
	}
	return nil
}

func stepDirName(step int) string { return fmt.Sprintf("step-%08d", step) }

// SaveCheckpoint writes a save of the run at its current step into dir (see
// above). extra, if not nil, is called with the new save's folder to add
// files (the tokenizer's) before the manifest is made.
func (t *Trainer) SaveCheckpoint(dir string, extra func(dir string) error) error {
	cps := filepath.Join(dir, checkpointsDir)
	if err := os.MkdirAll(cps, 0o755); err != nil {
		return err
	}
	seq := int64(1)
	if prev, err := readManifest(filepath.Join(dir, manifestFile)); err == nil {
		seq = prev.Seq + 1
	}
	for _, c := range listSaves(cps) {
		seq = max(seq, c.m.Seq+1)
	}
	step := t.Opt.Step
	staging, err := os.MkdirTemp(cps, "."+stepDirName(step)+"-*")
	if err != nil {
		return err
	}
	if err := t.writeFiles(staging, extra); err != nil {
		os.RemoveAll(staging)
		return err
	}
	if err := hook("files written"); err != nil {
		return err
	}
	m, err := makeManifest(staging, step, seq)
	if err != nil {
		os.RemoveAll(staging)
		return err
	}
	if err := writeManifest(filepath.Join(staging, manifestFile), m); err != nil {
		os.RemoveAll(staging)
		return err
	}
	if err := atomicfile.SyncDir(staging); err != nil {
		os.RemoveAll(staging)
		return err
	}
	if err := hook("staged"); err != nil {
		return err
	}
	final := filepath.Join(cps, stepDirName(step))
	if _, err := os.Lstat(final); err == nil {
		// The same step saved again (a resume stopped before its first
		// step): the old one goes; the top still links its files.
		if err := os.RemoveAll(final); err != nil {
			return err
		}
	}
	if err := os.Rename(staging, final); err != nil {
		os.RemoveAll(staging)
		return err
	}
	if err := atomicfile.SyncDir(cps); err != nil {
		return err
	}
	if err := hook("renamed"); err != nil {
		return err
	}
	for i, f := range m.Files {
		if err := publish(filepath.Join(final, f.Name), filepath.Join(dir, f.Name)); err != nil {
			return fmt.Errorf("train: save: %w", err)
		}
		if err := hook("published " + strconv.Itoa(i)); err != nil {
			return err
		}
	}
	if err := writeManifest(filepath.Join(dir, manifestFile), m); err != nil {
		return err
	}
	if err := hook("manifest"); err != nil {
		return err
	}
	return prune(dir, cps, final)
}

// publishSave links the files of the complete save in folder save to the
// top of dir and writes its manifest there, last.
func publishSave(dir, save string) error {
	m, err := readManifest(filepath.Join(save, manifestFile))
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		if err := publish(filepath.Join(save, f.Name), filepath.Join(dir, f.Name)); err != nil {
			return err
		}
	}
	return writeManifest(filepath.Join(dir, manifestFile), m)
}

// writeFiles writes the files of a save into dir.
func (t *Trainer) writeFiles(dir string, extra func(dir string) error) error {
	step := strconv.Itoa(t.Opt.Step)
	if t.LoRA != nil {
		if err := t.writeAdapter(dir, map[string]string{stepMetaKey: step}); err != nil {
			return err
		}
	} else if err := t.writeModel(dir, step); err != nil {
		return err
	}
	if extra != nil {
		if err := extra(dir); err != nil {
			return err
		}
	}
	if err := t.writeOptimizer(filepath.Join(dir, optimizerFile)); err != nil {
		return err
	}
	if err := WriteMetricsCSV(filepath.Join(dir, metricsFile), t.Metrics); err != nil {
		return err
	}
	return WriteLossPlot(filepath.Join(dir, plotFile), t.Metrics)
}

// writeModel writes the parameters and config.json into dir.
func (t *Trainer) writeModel(dir, step string) error {
	if err := t.Params.WriteTensors(filepath.Join(dir, "model.safetensors"), t.Params.Data, safetensors.F32,
		map[string]string{"format": "pt", stepMetaKey: step}); err != nil {
		return err
	}
	return t.Params.writeConfig(dir, safetensors.F32)
}

// makeManifest hashes and syncs every regular file of dir.
func makeManifest(dir string, step int, seq int64) (*manifest, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := &manifest{Format: manifestFormat, Step: step, Seq: seq}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == manifestFile || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		size, sum, err := hashFile(filepath.Join(dir, e.Name()), true)
		if err != nil {
			return nil, err
		}
		m.Files = append(m.Files, manifestEntry{Name: e.Name(), Size: size, SHA256: sum})
	}
	return m, nil
}

// hashFile returns the size and SHA-256 of a file, syncing it first when
// sync is set.
func hashFile(path string, sync bool) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	if sync {
		if err := f.Sync(); err != nil {
			return 0, "", err
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func writeManifest(path string, m *manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'))
}

// maxManifestSize bounds what readManifest reads (a manifest lists a few
// files: some hundred bytes each).
const maxManifestSize = 1 << 20

func readManifest(path string) (*manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() || fi.Size() > maxManifestSize {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, maxManifestSize)
	}
	var m manifest
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if m.Format != manifestFormat || m.Step < 0 || m.Seq < 0 || len(m.Files) == 0 {
		return nil, fmt.Errorf("%s: not a checkpoint manifest (format %q, step %d, %d files)", path, m.Format, m.Step, len(m.Files))
	}
	for _, f := range m.Files {
		if f.Name == "" || f.Name != filepath.Base(f.Name) || f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, `/\`) {
			return nil, fmt.Errorf("%s: bad file name %q", path, f.Name)
		}
	}
	return &m, nil
}

// publish makes dst a link to src (a copy where links are not possible),
// replacing dst in one rename.
func publish(src, dst string) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".publish")
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		r, oerr := os.Open(src)
		if oerr != nil {
			return oerr
		}
		defer r.Close()
		return atomicfile.Copy(dst, r)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

type save struct {
	dir string
	m   *manifest
}

// listSaves returns the step folders of cps that have a manifest, newest
// save first.
func listSaves(cps string) []save {
	ents, _ := os.ReadDir(cps)
	var out []save
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "step-") {
			continue
		}
		d := filepath.Join(cps, e.Name())
		if m, err := readManifest(filepath.Join(d, manifestFile)); err == nil {
			out = append(out, save{d, m})
		}
	}
	slices.SortFunc(out, func(a, b save) int {
		if a.m.Seq != b.m.Seq {
			return int(b.m.Seq - a.m.Seq)
		}
		return b.m.Step - a.m.Step
	})
	return out
}

// prune removes the saves of cps other than keep and the newest other
// complete one (keepSaves in all), unfinished save folders and leftover
// temporary links.
func prune(dir, cps, keep string) error {
	keepDirs := map[string]bool{keep: true}
	for _, s := range listSaves(cps) {
		if len(keepDirs) == keepSaves {
			break
		}
		if _, err := verify(s.dir); err == nil {
			keepDirs[s.dir] = true
		}
	}
	ents, _ := os.ReadDir(cps)
	for _, e := range ents {
		p := filepath.Join(cps, e.Name())
		if !keepDirs[p] && (strings.HasPrefix(e.Name(), "step-") || strings.HasPrefix(e.Name(), ".step-")) {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	if old, _ := filepath.Glob(filepath.Join(dir, ".*.publish")); len(old) > 0 {
		for _, p := range old {
			os.Remove(p)
		}
	}
	return atomicfile.SyncDir(cps)
}

// verify checks dir's files against its manifest; the error names each
// file that does not match and the step it is from.
func verify(dir string) (*manifest, error) {
	m, err := readManifest(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, f := range m.Files {
		p := filepath.Join(dir, f.Name)
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s is missing", f.Name))
			continue
		case !fi.Mode().IsRegular():
			bad = append(bad, fmt.Sprintf("%s is not a regular file", f.Name))
			continue
		}
		size, sum, err := hashFile(p, false)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", f.Name, err))
			continue
		}
		if size != f.Size || sum != f.SHA256 {
			bad = append(bad, fmt.Sprintf("%s %s, not the one saved at step %d", f.Name, describeStep(p), m.Step))
		}
	}
	if len(bad) > 0 {
		return m, fmt.Errorf("%s is not one complete save: its manifest is of step %d, but %s", dir, m.Step, strings.Join(bad, "; "))
	}
	return m, nil
}

// describeStep says which step a file of a save is from, where it records
// one.
func describeStep(path string) string {
	if s, ok := fileStep(path); ok {
		return fmt.Sprintf("is from step %d", s)
	}
	return "differs"
}

// fileStep is the step recorded in a save's model, optimizer state or
// metrics log.
func fileStep(path string) (int, bool) {
	switch filepath.Base(path) {
	case "model.safetensors", lora.WeightsFile:
		f, err := safetensors.Open(path)
		if err != nil {
			return 0, false
		}
		defer f.Close()
		s, err := strconv.Atoi(f.Metadata()[stepMetaKey])
		return s, err == nil
	case optimizerFile:
		f, err := safetensors.Open(path)
		if err != nil {
			return 0, false
		}
		defer f.Close()
		var st trainState
		if json.Unmarshal([]byte(f.Metadata()["jamba_train_state"]), &st) != nil {
			return 0, false
		}
		return st.Step, true
	case metricsFile:
		ms, err := ReadMetricsCSV(path)
		if err != nil || len(ms) == 0 {
			return 0, false
		}
		return ms[len(ms)-1].Step, true
	}
	return 0, false
}

// RunFolder is the training folder that dir belongs to: dir itself, or for
// one of its saves (DIR/checkpoints/step-N) DIR, where a resume from that
// save goes on saving.
func RunFolder(dir string) string {
	clean := filepath.Clean(dir)
	if parent := filepath.Dir(clean); filepath.Base(parent) == checkpointsDir && strings.HasPrefix(filepath.Base(clean), "step-") {
		return filepath.Dir(parent)
	}
	return dir
}

// FindCheckpoint returns the folder that Resume(dir) loads and the notes
// that say why it is not dir, if so (see findCheckpoint).
func FindCheckpoint(dir string) (string, []string, error) {
	cp, notes, err := findCheckpoint(dir)
	if err != nil {
		return "", notes, fmt.Errorf("train: resume: %w", err)
	}
	return cp, notes, nil
}

// findCheckpoint returns the folder a resume of dir loads: dir itself when
// it verifies against its manifest (or has none and no saves, as folders
// written before manifests existed), else its newest complete save. notes
// say what was skipped and why.
func findCheckpoint(dir string) (string, []string, error) {
	if fi, err := os.Stat(dir); err != nil {
		return "", nil, err
	} else if !fi.IsDir() {
		return "", nil, fmt.Errorf("%s is not a folder", dir)
	}
	_, topErr := verify(dir)
	noManifest := errors.Is(topErr, fs.ErrNotExist)
	saves := listSaves(filepath.Join(dir, checkpointsDir))
	if noManifest && len(saves) == 0 {
		// A folder without manifest: a checkpoint from before manifests,
		// or one whose first save never completed. Its model and
		// optimizer state must at least be of one step.
		if _, err := os.Stat(filepath.Join(dir, optimizerFile)); err != nil {
			return "", nil, fmt.Errorf("no checkpoint in %s: no save has completed there (no %s, no %s)", dir, manifestFile, optimizerFile)
		}
		ms, mok := fileStep(filepath.Join(dir, "model.safetensors"))
		st, ook := fileStep(filepath.Join(dir, optimizerFile))
		if mok && ook && ms != st {
			return "", nil, fmt.Errorf("%s is not one complete save: model.safetensors is from step %d, %s from step %d (and no %s)", dir, ms, optimizerFile, st, manifestFile)
		}
		return dir, []string{fmt.Sprintf("%s has no %s: its files cannot be verified", dir, manifestFile)}, nil
	}
	// The newest complete save wins: the top when it verifies and no
	// step folder is newer, else the newest step folder that verifies.
	var notes []string
	top, _ := readManifest(filepath.Join(dir, manifestFile))
	if noManifest {
		notes = append(notes, fmt.Sprintf("%s has no %s (a save was cut short)", dir, manifestFile))
	} else if topErr != nil {
		notes = append(notes, topErr.Error())
	}
	for _, s := range saves {
		if topErr == nil && top != nil && s.m.Seq <= top.Seq {
			break
		}
		if _, err := verify(s.dir); err != nil {
			notes = append(notes, err.Error())
			continue
		}
		if topErr == nil {
			notes = append(notes, fmt.Sprintf("%s is of step %d, but a later save is complete", dir, top.Step))
		}
		notes = append(notes, fmt.Sprintf("resuming from the newest complete save, %s (step %d)", s.dir, s.m.Step))
		return s.dir, notes, nil
	}
	if topErr == nil {
		return dir, nil, nil
	}
	return "", notes, fmt.Errorf("no complete checkpoint in %s: %s", dir, strings.Join(notes, "; "))
}

// maxSavedCount bounds step, epoch and the like read from a checkpoint
// (2^40: far beyond any run, small enough that products stay in int64).
const maxSavedCount = 1 << 40

// validate checks every field of a saved training state against itself and
// the data it is resumed over (data tokens).
func (st *trainState) validate(path string, data int) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("train: resume: %s: jamba_train_state: %s", path, fmt.Sprintf(format, a...))
	}
	o := st.Options
	if err := o.Validate(); err != nil {
		return bad("options: %v", err)
	}
	if o.Steps > maxSavedCount || o.Seq > maxSavedCount || o.Batch > maxSavedCount || o.Accum > maxSavedCount ||
		o.Warmup > maxSavedCount || o.EvalEvery > maxSavedCount || o.SaveEvery > maxSavedCount || o.EvalTokens > maxSavedCount {
		return bad("options: a count above %d", int64(maxSavedCount))
	}
	switch {
	case st.Step < 0 || st.Step > o.Steps:
		return bad("step %d outside [0, steps %d]", st.Step, o.Steps)
	case st.Epoch < 0 || st.Epoch > maxSavedCount:
		return bad("epoch %d is negative or absurd", st.Epoch)
	case st.Pos < 0 || st.Pos > maxSavedCount:
		return bad("pos %d is negative or absurd", st.Pos)
	case st.Tokens < 0:
		return bad("tokens %d is negative", st.Tokens)
	case math.IsNaN(st.Elapsed) || math.IsInf(st.Elapsed, 0) || st.Elapsed < 0:
		return bad("elapsed_s %v is not a finite non-negative number", st.Elapsed)
	case st.DataSize < 0:
		return bad("data_tokens %d is negative", st.DataSize)
	}
	rows := int64(st.Step) * int64(o.Accum) * int64(o.Batch) // rows served so far
	if int64(st.Epoch) > rows {
		return bad("epoch %d after %d rows served (every epoch has at least one row)", st.Epoch, rows)
	}
	if int64(st.Pos) > rows {
		return bad("pos %d after %d rows served", st.Pos, rows)
	}
	if st.Tokens > rows*int64(o.Seq) {
		return bad("tokens %d after %d rows of at most %d tokens", st.Tokens, rows, o.Seq)
	}
	if st.DataSize != data {
		return fmt.Errorf("train: resume: the checkpoint was trained on %d tokens, the data given has %d (same files and tokenizer needed)", st.DataSize, data)
	}
	return nil
}

// writeOptimizer writes optimizer.safetensors: the AdamW moments and the
// training state.
func (t *Trainer) writeOptimizer(path string) error {
	st := trainState{Options: t.Opts, Step: t.Opt.Step, Epoch: t.Data.Epoch, Pos: t.Data.Pos, Seed: t.Data.Seed,
		Tokens: t.Tokens, Elapsed: t.Elapsed, DataSize: len(t.Data.Tokens)}
	js, err := json.Marshal(st)
	if err != nil {
		return err
	}
	n := len(t.trained().Data)
	infos := []safetensors.TensorInfo{{Name: "m", DType: safetensors.F32, Shape: []int{n}}, {Name: "v", DType: safetensors.F32, Shape: []int{n}}}
	w, err := safetensors.Create(path, infos, map[string]string{"format": "pt", "jamba_train_state": string(js)})
	if err != nil {
		return err
	}
	if err := w.WriteFloat32("m", t.Opt.M); err != nil {
		return err
	}
	if err := w.WriteFloat32("v", t.Opt.V); err != nil {
		return err
	}
	return w.Close()
}
