package cuda

import "sort"

// profiler splits the device time of forward passes by stage: an event is
// recorded on the stream at each mark, and the time between one mark and
// the next is charged to the first mark's stage. It is off (nil) unless a
// measurement asks for it, so the decode loop records nothing.
type profiler struct {
	dev    *Device
	events []uintptr
	stages []string
	n      int
	ms     map[string]float64
	err    error
}

// mark starts stage name at this point of the stream.
func (m *Model) mark(name string) {
	p := m.prof
	if p == nil || p.err != nil {
		return
	}
	d := p.dev.d
	if p.n == len(p.events) {
		var e uintptr
		if p.err = d.check("cuEventCreate", d.cuEventCreate(&e, 0)); p.err != nil {
			return
		}
		p.events = append(p.events, e)
		p.stages = append(p.stages, "")
	}
	p.stages[p.n] = name
	p.err = d.check("cuEventRecord", d.cuEventRecord(p.events[p.n], 0))
	p.n++
}

// collect waits for the marks recorded so far and adds the time between
// them to their stages.
func (p *profiler) collect() error {
	if p.err != nil || p.n == 0 {
		return p.err
	}
	d := p.dev.d
	if err := d.check("cuEventSynchronize", d.cuEventSynchronize(p.events[p.n-1])); err != nil {
		return err
	}
	for i := 1; i < p.n; i++ {
		var ms float32
		if err := d.check("cuEventElapsedTime", d.cuEventElapsedTime(&ms, p.events[i-1], p.events[i])); err != nil {
			return err
		}
		p.ms[p.stages[i-1]] += float64(ms)
	}
	p.n = 0
	return nil
}

// profileSteps runs step k times with the profiler on and returns the mean
// milliseconds per step of each stage.
func (m *Model) profileSteps(k int, step func(int) error) (map[string]float64, error) {
	dev := m.Dev
	if dev.enter() {
		defer dev.leave()
	}
	p := &profiler{dev: dev, ms: map[string]float64{}}
	m.prof = p
	defer func() {
		m.prof = nil
		for _, e := range p.events {
			dev.d.cuEventDestroy(e)
		}
	}()
	for i := 0; i < k; i++ {
		if err := step(i); err != nil {
			return nil, err
		}
		m.mark("end")
		if err := p.collect(); err != nil {
			return nil, err
		}
	}
	for s := range p.ms {
		p.ms[s] /= float64(k)
	}
	return p.ms, nil
}

// stageNames lists a profile's stages, the slowest first.
func stageNames(ms map[string]float64) []string {
	var names []string
	for s := range ms {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool { return ms[names[i]] > ms[names[j]] })
	return names
}
