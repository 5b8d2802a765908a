package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Defaults of a View.
const (
	DefaultPollInterval = time.Second
	DefaultPollTimeout  = 500 * time.Millisecond
)

// ViewOptions configure a View.
type ViewOptions struct {
	// Members returns the current membership (nil: no fleet, no peers).
	Members func() *Members
	// Interval between polls of every peer (default 1 s); Timeout bounds
	// one poll of one peer (default 500 ms).
	Interval time.Duration
	Timeout  time.Duration
	// StaleAfter is how old a peer's last answer may be before placement
	// ignores the peer (default 3 × Interval).
	StaleAfter time.Duration
	// Now is injected by tests; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// View is one pod's picture of its peers' load, kept by polling each
// peer's LoadPath. It needs nothing but the peers: no manager, no API
// server. Lifecycle: NewView, Start (background polling) or Poll (tests);
// Close stops the polling and waits for it.
type View struct {
	o      ViewOptions
	client *http.Client

	mu      sync.Mutex
	peers   map[int]seen
	running bool

	// pollMu serialises Refresh; lastPoll is when the last poll ended.
	pollMu   sync.Mutex
	lastPoll time.Time

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type seen struct {
	load Load
	at   time.Time
}

// NewView returns a View that has seen no peer yet.
func NewView(o ViewOptions) *View {
	if o.Interval <= 0 {
		o.Interval = DefaultPollInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultPollTimeout
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 3 * o.Interval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &View{o: o, peers: map[int]seen{}, stop: make(chan struct{}), done: make(chan struct{}),
		client: &http.Client{Timeout: o.Timeout, Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: o.Timeout}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     30 * time.Second,
		}}}
}

// Start polls every peer each Interval until Close.
func (v *View) Start() {
	v.mu.Lock()
	if v.running {
		v.mu.Unlock()
		return
	}
	v.running = true
	v.mu.Unlock()
	go func() {
		defer close(v.done)
		t := time.NewTicker(v.o.Interval)
		defer t.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-v.stop
			cancel()
		}()
		v.Poll(ctx)
		for {
			select {
			case <-v.stop:
				return
			case <-t.C:
				v.Poll(ctx)
			}
		}
	}()
}

// Close stops the polling started by Start (if any) and waits for it.
func (v *View) Close() {
	v.once.Do(func() {
		v.mu.Lock()
		running := v.running
		v.mu.Unlock()
		close(v.stop)
		if running {
			<-v.done
		}
		v.client.CloseIdleConnections()
	})
}

// refreshEvery bounds how often Refresh polls on demand.
const refreshEvery = 250 * time.Millisecond

// Refresh polls now unless a poll ended within the last 250 ms. Placement
// calls it when its view offers no pod at all (a draining pod that has
// not heard from its peers yet), rather than refusing the session.
func (v *View) Refresh(ctx context.Context) {
	v.pollMu.Lock()
	defer v.pollMu.Unlock()
	v.mu.Lock()
	recent := time.Since(v.lastPoll) < refreshEvery
	v.mu.Unlock()
	if !recent {
		v.Poll(ctx)
	}
}

// Poll asks every peer for its load once, concurrently, and keeps the
// answers. A peer that does not answer, answers badly or names another
// ordinal is forgotten until it answers again.
func (v *View) Poll(ctx context.Context) {
	m := v.o.Members()
	var ords []int
	if m != nil {
		ords = m.Peers()
	}
	var wg sync.WaitGroup
	for _, o := range ords {
		addr, err := m.Address(o)
		if err != nil {
			v.forget(o)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := v.fetch(ctx, addr, m.Token())
			if err == nil && l.Ordinal != o {
				err = fmt.Errorf("answered as ordinal %d", l.Ordinal)
			}
			if err != nil {
				v.o.Logger.Debug("fleet peer load unknown", "ordinal", o, "addr", addr, "err", err)
				v.forget(o)
				return
			}
			v.mu.Lock()
			v.peers[o] = seen{load: l, at: v.o.Now()}
			v.mu.Unlock()
		}()
	}
	wg.Wait()
	keep := make(map[int]bool, len(ords))
	for _, o := range ords {
		keep[o] = true
	}
	v.mu.Lock()
	v.lastPoll = time.Now()
	for o := range v.peers {
		if !keep[o] {
			delete(v.peers, o)
		}
	}
	v.mu.Unlock()
}

func (v *View) fetch(ctx context.Context, addr, token string) (Load, error) {
	var l Load
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+LoadPath, nil)
	if err != nil {
		return l, err
	}
	req.Header.Set(TokenHeader, token)
	resp, err := v.client.Do(req)
	if err != nil {
		return l, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return l, fmt.Errorf("status %d", resp.StatusCode)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&l)
	return l, err
}

// Placed counts a session just placed on peer ordinal in its known load,
// so that a burst of sessions/new within one poll interval spreads over
// the peers instead of piling onto the one that looked emptiest. The next
// poll replaces the estimate with the peer's own count.
func (v *View) Placed(ordinal int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p, ok := v.peers[ordinal]; ok {
		p.load.Sessions++
		v.peers[ordinal] = p
	}
}

// Forget drops what is known of peer ordinal (it failed to take a
// forwarded call); the next successful poll brings it back.
func (v *View) Forget(ordinal int) { v.forget(ordinal) }

func (v *View) forget(o int) {
	v.mu.Lock()
	delete(v.peers, o)
	v.mu.Unlock()
}

// Peers returns the loads of the peers that answered within StaleAfter,
// by ordinal.
func (v *View) Peers() []Load {
	now := v.o.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]Load, 0, len(v.peers))
	for _, s := range v.peers {
		if now.Sub(s.at) <= v.o.StaleAfter {
			out = append(out, s.load)
		}
	}
	slices.SortFunc(out, func(a, b Load) int { return cmp.Compare(a.Ordinal, b.Ordinal) })
	return out
}
