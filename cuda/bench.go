package cuda

import (
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// BenchOptions say what Bench measures.
type BenchOptions struct {
	PromptTokens int   // prefill length (one forward call)
	GenTokens    int   // decode steps timed per batch size
	Batches      []int // decode batch sizes
	Context      int   // if > 0: also decode at batch 1 after a (random) context of this many tokens
	Seed         uint64
	Profile      bool // also split the decode step's device time by stage
	// Queued: also time each batch's decode step with every launch issued
	// before the GPU starts it (queuedSteps): the host time the GPU waits
	// for in a step is what CUDA graphs could save.
	Queued   bool
	Progress io.Writer // nil: quiet
}

// BenchResult is what Bench measured; speeds are tokens per second.
type BenchResult struct {
	Device              string             `json:"device"`
	WeightBytes         int64              `json:"weight_bytes"`
	ActiveBytesPerToken int64              `json:"active_weight_bytes_per_token"`
	CopyBandwidthGBs    float64            `json:"copy_bandwidth_gb_s"` // read + write, device to device
	RooflineTokPerS     float64            `json:"decode_roofline_tokens_per_s"`
	PromptTokens        int                `json:"prompt_tokens"`
	PrefillTokPerS      float64            `json:"prefill_tokens_per_s"`
	PrefillSeconds      float64            `json:"prefill_seconds"`
	Decode              map[string]float64 `json:"decode_tokens_per_s"` // by batch size, all sequences together
	DecodeMsPerStep     map[string]float64 `json:"decode_ms_per_step"`
	RooflineFraction    float64            `json:"decode_roofline_fraction"` // batch 1
	Context             int                `json:"context,omitempty"`
	ContextDecode       float64            `json:"context_decode_tokens_per_s,omitempty"`
	LaunchMicros        float64            `json:"launch_us"`         // host time per kernel launch
	LaunchesPerStep     float64            `json:"launches_per_step"` // kernels per decode step at batch 1
	// ProfileMs: by batch size, the device milliseconds of a decode step
	// by stage (events between the stages; with Profile).
	ProfileMs map[string]map[string]float64 `json:"profile_ms,omitempty"`
	// With Queued, by batch size: the device milliseconds of a decode
	// step whose launches were all issued before it started (from the
	// first kernel to the end of sampling; the ids' copy to the host
	// excepted), and the host milliseconds that issuing them took.
	QueuedMsPerStep map[string]float64 `json:"queued_ms_per_step,omitempty"`
	IssueMsPerStep  map[string]float64 `json:"issue_ms_per_step,omitempty"`
}

// CopyBandwidth measures device-to-device copy speed over a buffer of n
// bytes, counting bytes read plus bytes written, median of reps copies.
func (dev *Device) CopyBandwidth(n int64, reps int) (float64, error) {
	a, err := dev.Alloc(n)
	if err != nil {
		return 0, err
	}
	defer dev.Free(&a)
	b, err := dev.Alloc(n)
	if err != nil {
		return 0, err
	}
	defer dev.Free(&b)
	if err := dev.launch("fill_f32", [2]int{4 * dev.SMs}, 256, a.Ptr, la(n/4), 7, fa(1), fa(0)); err != nil {
		return 0, err
	}
	t, err := dev.NewTimer()
	if err != nil {
		return 0, err
	}
	var times []float64
	for i := 0; i < reps+2; i++ {
		if err := t.Start(); err != nil {
			return 0, err
		}
		if err := dev.Copy(b.Ptr, a.Ptr, n); err != nil {
			return 0, err
		}
		s, err := t.Stop()
		if err != nil {
			return 0, err
		}
		if i >= 2 { // two warm-up copies
			times = append(times, s)
		}
	}
	return 2 * float64(n) / median(times) / 1e9, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// Bench measures prefill and decode speed of m.
func Bench(m *Model, o BenchOptions) (*BenchResult, error) {
	dev := m.Dev
	if dev.enter() {
		defer dev.leave()
	}
	say := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	r := &BenchResult{Device: dev.Name, WeightBytes: m.WeightBytes(), ActiveBytesPerToken: m.ActiveWeightBytes(),
		PromptTokens: o.PromptTokens, Decode: map[string]float64{}, DecodeMsPerStep: map[string]float64{}}
	var err error
	say("copy bandwidth...")
	if r.CopyBandwidthGBs, err = dev.CopyBandwidth(2<<30, 10); err != nil {
		return nil, err
	}
	r.RooflineTokPerS = r.CopyBandwidthGBs * 1e9 / float64(r.ActiveBytesPerToken)
	if r.LaunchMicros, err = dev.launchCost(2000); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	V := m.Config.VocabSize
	randTokens := func(n int) []int {
		t := make([]int, n)
		for i := range t {
			t[i] = 3 + rng.IntN(V-3)
		}
		return t
	}
	timer, err := dev.NewTimer()
	if err != nil {
		return nil, err
	}
	// Prefill: one forward call over the prompt, after one untimed call of
	// the same size (buffers, cuBLAS heuristics).
	if o.PromptTokens > 0 {
		seq, err := m.NewSeq(o.PromptTokens + 1)
		if err != nil {
			return nil, err
		}
		prompt := randTokens(o.PromptTokens)
		for i := 0; i < 3; i++ {
			if err := seq.Reset(); err != nil {
				return nil, err
			}
			say("prefill of %d tokens (%d)...", o.PromptTokens, i)
			if err := timer.Start(); err != nil {
				return nil, err
			}
			if err := m.Forward([]SeqInput{{Tokens: prompt, Cache: seq}}); err != nil {
				return nil, err
			}
			s, err := timer.Stop()
			if err != nil {
				return nil, err
			}
			if i > 0 && (r.PrefillSeconds == 0 || s < r.PrefillSeconds) {
				r.PrefillSeconds = s
			}
		}
		r.PrefillTokPerS = float64(o.PromptTokens) / r.PrefillSeconds
		seq.Free()
	}
	decode := func(b, past int) (float64, error) {
		seqs := make([]*Seq, b)
		in := make([]SeqInput, b)
		for i := range seqs {
			s, err := m.NewSeq(past + o.GenTokens + 64)
			if err != nil {
				return 0, err
			}
			defer s.Free()
			seqs[i] = s
			in[i] = SeqInput{Tokens: randTokens(1), Cache: s}
		}
		// A long context is made of random keys, values and states: the
		// decode step reads the same bytes as after a real prefill.
		for i := range seqs {
			if past > 0 {
				if err := seqs[i].fillRandom(past, o.Seed+uint64(i)); err != nil {
					return 0, err
				}
			}
		}
		feed := randTokens(4096)
		step := func(k int) error {
			if err := m.Forward(in); err != nil {
				return err
			}
			m.mark("sample")
			// The next tokens are drawn on the GPU (their cost is part of
			// the step) but fed from a random table: greedy decoding of
			// random weights collapses onto a few tokens, whose identical
			// routing would not load the experts as text does.
			if _, err := m.Sample(SampleOptions{}); err != nil {
				return err
			}
			for i := range in {
				in[i].Tokens[0] = feed[(k*len(in)+i)%len(feed)]
			}
			return nil
		}
		for k := 0; k < 3; k++ { // warm-up
			if err := step(k); err != nil {
				return 0, err
			}
		}
		t0 := time.Now()
		l0 := dev.Launches
		for k := 0; k < o.GenTokens; k++ {
			if err := step(k); err != nil {
				return 0, err
			}
		}
		// Sample copies the ids back, so every step has finished here.
		if b == 1 {
			r.LaunchesPerStep = float64(dev.Launches-l0) / float64(o.GenTokens)
		}
		el := time.Since(t0).Seconds() / float64(o.GenTokens)
		if o.Queued && past == 0 {
			q, h, err := m.queuedSteps(4, in, func(k int) {
				for i := range in {
					in[i].Tokens[0] = feed[(k*len(in)+i+7)%len(feed)]
				}
			})
			if err != nil {
				return 0, err
			}
			if r.QueuedMsPerStep == nil {
				r.QueuedMsPerStep, r.IssueMsPerStep = map[string]float64{}, map[string]float64{}
			}
			r.QueuedMsPerStep[fmt.Sprint(b)], r.IssueMsPerStep[fmt.Sprint(b)] = q, h
			say("  step %.3f ms; queued before the GPU starts it: %.3f ms of device time, %.3f ms to issue", el*1e3, q, h)
		}
		if o.Profile && past == 0 {
			p, err := m.profileSteps(4, step)
			if err != nil {
				return 0, err
			}
			if r.ProfileMs == nil {
				r.ProfileMs = map[string]map[string]float64{}
			}
			r.ProfileMs[fmt.Sprint(b)] = p
			for _, s := range stageNames(p) {
				say("  %-16s %8.3f ms", s, p[s])
			}
		}
		return el, nil
	}
	for _, b := range o.Batches {
		say("decode at batch %d...", b)
		s, err := decode(b, 0)
		if err != nil {
			return nil, fmt.Errorf("decode at batch %d: %w", b, err)
		}
		key := fmt.Sprint(b)
		r.Decode[key] = float64(b) / s
		r.DecodeMsPerStep[key] = s * 1e3
		if b == 1 {
			r.RooflineFraction = r.Decode[key] / r.RooflineTokPerS
		}
	}
	if o.Context > 0 {
		say("decode at batch 1 after %d tokens of context...", o.Context)
		s, err := decode(1, o.Context)
		if err != nil {
			return nil, fmt.Errorf("decode after %d tokens: %w", o.Context, err)
		}
		r.Context = o.Context
		r.ContextDecode = 1 / s
	}
	return r, nil
}

// launchCost is the host time of one kernel launch in microseconds: n
// launches of a one-element kernel, then a wait.
func (dev *Device) launchCost(n int) (float64, error) {
	b, err := dev.Alloc(4)
	if err != nil {
		return 0, err
	}
	defer dev.Free(&b)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := dev.launch("add_bias", [2]int{1}, 32, b.Ptr, b.Ptr, ia(1), la(0)); err != nil {
			return 0, err
		}
	}
	el := time.Since(t0)
	if err := dev.Sync(); err != nil {
		return 0, err
	}
	return el.Seconds() * 1e6 / float64(n), nil
}

// queuedSteps runs k decode steps over in (Forward, then the greedy
// sampling launch), each with the stream held by a long kernel launched
// after the step's metadata upload until the host has issued every launch
// of the step, and returns the mean device milliseconds of a step from the
// end of that kernel to the end of sampling — the step without the host
// time the GPU otherwise waits for between launches — and the mean host
// milliseconds the launches took to issue. next(i) sets the tokens of
// step i+1. A hold that ended before the last launch was issued is
// doubled and the step run again.
func (m *Model) queuedSteps(k int, in []SeqInput, next func(int)) (devMs, hostMs float64, err error) {
	dev := m.Dev
	if dev.enter() {
		defer dev.leave()
	}
	d := dev.d
	var ev [2]uintptr
	for i := range ev {
		if err := d.check("cuEventCreate", d.cuEventCreate(&ev[i], 0)); err != nil {
			return 0, 0, err
		}
		defer d.cuEventDestroy(ev[i])
	}
	hold := int64(4 << 30)
	var blk Buf
	defer func() { dev.Free(&blk) }()
	m.hold = func() error {
		if blk.Bytes < hold {
			dev.Free(&blk)
			var err error
			if blk, err = dev.Alloc(hold); err != nil {
				return err
			}
		}
		if err := dev.launch("fill_f32", [2]int{4 * dev.SMs}, 256, blk.Ptr, la(hold/4), 3, fa(1), fa(0)); err != nil {
			return err
		}
		return d.check("cuEventRecord", d.cuEventRecord(ev[0], 0))
	}
	defer func() { m.hold = nil }()
	for done, tries := 0, 0; done < k; tries++ {
		if tries > k+6 {
			return 0, 0, fmt.Errorf("cuda: a hold of %d bytes still ended before the step was issued", hold)
		}
		t0 := time.Now()
		if err := m.Forward(in); err != nil {
			return 0, 0, err
		}
		if err := m.sampleRows(0, m.ws.nhead, SampleOptions{}); err != nil {
			return 0, 0, err
		}
		if err := d.check("cuEventRecord", d.cuEventRecord(ev[1], 0)); err != nil {
			return 0, 0, err
		}
		issued := time.Since(t0)
		held := d.cuEventQuery(ev[0]) == cudaErrorNotReady
		if err := d.check("cuEventSynchronize", d.cuEventSynchronize(ev[1])); err != nil {
			return 0, 0, err
		}
		next(tries)
		if !held {
			hold *= 2
			continue
		}
		var ms float32
		if err := d.check("cuEventElapsedTime", d.cuEventElapsedTime(&ms, ev[0], ev[1])); err != nil {
			return 0, 0, err
		}
		devMs += float64(ms)
		hostMs += issued.Seconds() * 1e3
		done++
	}
	return devMs / float64(k), hostMs / float64(k), nil
}

// cudaErrorNotReady is CUDA_ERROR_NOT_READY: cuEventQuery's answer for an
// event the stream has not reached.
const cudaErrorNotReady = 600
