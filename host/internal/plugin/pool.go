package plugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// instance is one initialised module. It is used by one call at a time:
// wazero does not serialise calls into a module.
type instance struct {
	mod    api.Module
	handle api.Function
	calls  int
}

// pool holds a version's instances: idle ones in a channel and a semaphore
// bounding idle plus busy at MaxInstances.
//
// Idle instances follow demand: every reapInterval the pool closes the idle
// instances that no call needed during the interval (the lowest idle count
// it saw), keeping at least MaxIdleInstances. A steady load keeps its
// instances warm; after a burst, memory goes back within two intervals.
type pool struct {
	v    *Version
	idle chan *instance
	sem  chan struct{}
	stop chan struct{}

	lowWater atomic.Int64 // fewest idle instances seen since the last reap

	created, discarded, calls, failures atomic.Int64
}

// reapInterval is how often unneeded idle instances are closed.
var reapInterval = 30 * time.Second

func newPool(v *Version) *pool {
	p := &pool{
		v:    v,
		idle: make(chan *instance, v.limits.MaxInstances),
		sem:  make(chan struct{}, v.limits.MaxInstances),
		stop: make(chan struct{}),
	}
	go p.reapLoop(reapInterval)
	return p
}

func (p *pool) reapLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.reap()
		}
	}
}

// reap closes the idle instances that went unused for a whole interval,
// down to MaxIdleInstances.
func (p *pool) reap() {
	unused := int(p.lowWater.Swap(int64(len(p.idle))))
	excess := min(unused, len(p.idle)-p.v.limits.MaxIdleInstances)
	for ; excess > 0; excess-- {
		select {
		case in := <-p.idle:
			p.discard(in)
		default:
			return
		}
	}
	p.lowWater.Store(int64(len(p.idle)))
}

// noteIdle lowers the low-water mark after an instance was taken.
func (p *pool) noteIdle() {
	n := int64(len(p.idle))
	for {
		cur := p.lowWater.Load()
		if n >= cur || p.lowWater.CompareAndSwap(cur, n) {
			return
		}
	}
}

// get returns an idle instance, or starts a new one while under the cap, or
// waits for one until ctx ends.
func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case in := <-p.idle:
		p.noteIdle()
		return in, nil
	default:
	}
	p.lowWater.Store(0)
	select {
	case in := <-p.idle:
		return in, nil
	case p.sem <- struct{}{}:
		in, err := p.start(ctx)
		if err != nil {
			<-p.sem
			return nil, err
		}
		return in, nil
	case <-ctx.Done():
		return nil, ErrBusy
	}
}

func (p *pool) start(ctx context.Context) (*instance, error) {
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(abi.ExportInitialize).
		WithStdout(p.v.out.stream("stdout")).
		WithStderr(p.v.out.stream("stderr")).
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	// Initialisation gets its own deadline so a plugin that loops in init
	// cannot hang the loader.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	mod, err := p.v.runtime.InstantiateModule(experimental.WithMemoryAllocator(ictx, memoryAllocator), p.v.compiled, cfg)
	if err != nil {
		return nil, err
	}
	p.created.Add(1)
	return &instance{mod: mod, handle: mod.ExportedFunction(abi.ExportHandle)}, nil
}

// put returns an instance after a call; healthy says whether the call ended
// normally. Unhealthy, worn or oversized instances are closed.
func (p *pool) put(in *instance, healthy bool) {
	in.calls++
	// Size is read only from a healthy instance: a closed one's memory is
	// already unmapped.
	if !healthy || in.calls >= p.v.limits.RecycleAfterCalls || in.mod.Memory().Size()/65536 > p.v.limits.RecycleAfterPages || p.v.isRetired() {
		p.discard(in)
		return
	}
	select {
	case p.idle <- in:
	default:
		p.discard(in)
	}
}

func (p *pool) discard(in *instance) {
	in.mod.Close(context.Background())
	p.discarded.Add(1)
	<-p.sem
}

// close stops the reaper and closes the idle instances.
func (p *pool) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.drainIdle()
}

func (p *pool) drainIdle() {
	for {
		select {
		case in := <-p.idle:
			p.discard(in)
		default:
			return
		}
	}
}

func (p *pool) stats() Stats {
	idle := len(p.idle)
	return Stats{
		Idle:      idle,
		Busy:      len(p.sem) - idle,
		Created:   p.created.Load(),
		Discarded: p.discarded.Load(),
		Calls:     p.calls.Load(),
		Failures:  p.failures.Load(),
	}
}

func (v *Version) isRetired() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.retired
}

// guestOutput sends a plugin's stdout and stderr to the host log, a line at
// a time, tagged with the plugin, at most linesPerSecond lines per second
// (with a burst); lines over the rate are counted and reported once the
// rate allows again.
type guestOutput struct {
	log     *slog.Logger
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
}

const (
	linesPerSecond = 20
	lineBurst      = 50
	maxLine        = 4096
)

func newGuestOutput(l *slog.Logger) *guestOutput {
	return &guestOutput{log: l, tokens: lineBurst, last: time.Now()}
}

type outStream struct {
	g    *guestOutput
	name string
	mu   sync.Mutex
	buf  []byte
}

func (g *guestOutput) stream(name string) *outStream { return &outStream{g: g, name: name} }

func (s *outStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, b...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			if len(s.buf) > maxLine {
				s.g.line(s.name, s.buf[:maxLine])
				s.buf = s.buf[:0]
			}
			return len(b), nil
		}
		s.g.line(s.name, s.buf[:min(i, maxLine)])
		s.buf = s.buf[i+1:]
	}
}

// limit takes one line's worth of the rate; it reports whether the line
// may be logged and how many were dropped since the last one that was.
func (g *guestOutput) limit() (ok bool, dropped int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.tokens = min(lineBurst, g.tokens+now.Sub(g.last).Seconds()*linesPerSecond)
	g.last = now
	if g.tokens < 1 {
		g.dropped++
		return false, 0
	}
	g.tokens--
	dropped, g.dropped = g.dropped, 0
	return true, dropped
}

func (g *guestOutput) emit(level slog.Level, msg string, attrs ...any) {
	ok, dropped := g.limit()
	if !ok {
		return
	}
	if dropped > 0 {
		g.log.Warn("plugin output rate-limited", "dropped_lines", dropped)
	}
	g.log.Log(context.Background(), level, msg, attrs...)
}

func (g *guestOutput) line(stream string, b []byte) {
	g.emit(slog.LevelInfo, "plugin output", "stream", stream, "line", string(b))
}

// logGuest writes a line the plugin sent through the log host function,
// under the same rate limit as its stdout and stderr.
func (g *guestOutput) logGuest(level int32, msg []byte) {
	g.emit(slog.Level(level), "plugin log", "message", string(msg[:min(len(msg), maxLine)]))
}
