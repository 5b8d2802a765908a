package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

type fanOutFlags struct {
	server   serverFlags
	levels   string
	window   time.Duration
	settle   time.Duration
	floor    time.Duration
	fps      int
	perFrame int
	size     int
	joinConc int
	profile  string
}

func runFanOut(args []string) error {
	var f fanOutFlags
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	f.server.register(fs)
	fs.StringVar(&f.levels, "subscribers", "1,10,100,300", "subscriber counts, ascending; one server process grows through them")
	fs.DurationVar(&f.window, "window", 10*time.Second, "steady measurement window per level")
	fs.DurationVar(&f.settle, "settle", 2*time.Second, "wait after the last join before the window")
	fs.DurationVar(&f.floor, "floor", 10*time.Second, "window of the direct Pion to Pion latency floor")
	fs.IntVar(&f.fps, "fps", 30, "frames per second")
	fs.IntVar(&f.perFrame, "packets-per-frame", 9, "packets per frame (30 x 9 = 270 pkt/s)")
	fs.IntVar(&f.size, "size", 1150, "RTP payload bytes (1150 B x 270 pkt/s = 2.5 Mbps)")
	fs.IntVar(&f.joinConc, "join-concurrency", 4, "subscribers joining at once")
	fs.StringVar(&f.profile, "profile", "", "after the last level, record the server with perf for one window and write the top of the report here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var levels []int
	for _, s := range strings.Split(f.levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || (len(levels) > 0 && n <= levels[len(levels)-1]) {
			return fmt.Errorf("-subscribers %q: want ascending positive counts", f.levels)
		}
		levels = append(levels, n)
	}
	api, err := newAPI()
	if err != nil {
		return err
	}
	fmt.Printf("fan-out: 1 publisher, %d fps x %d packets x %d B = %.2f Mbps, %d pkt/s; window %v per level\n",
		f.fps, f.perFrame, f.size, float64(f.fps*f.perFrame*(f.size+12)*8)/1e6, f.fps*f.perFrame, f.window)

	fmt.Printf("load average before floor: %s\n", loadAvg())
	floor, err := measureFloor(api, f)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	fp50, fp99 := floor.hist.quantile(0.50), floor.hist.quantile(0.99)
	ff50, ff99 := floor.first.quantile(0.50), floor.first.quantile(0.99)
	fmt.Printf("floor (direct Pion to Pion, same generator, %d packets): every packet p50 %s / p99 %s ms; first packet of a frame p50 %s / p99 %s ms\n",
		floor.got.Load(), ms(fp50), ms(fp99), ms(ff50), ms(ff99))

	srv, err := startServer(f.server)
	if err != nil {
		return err
	}
	defer srv.stop()
	rss0 := procRSS(srv.pid())
	fmt.Printf("server pid %d (pinned to CPU %q), idle RSS %.1f MB\n", srv.pid(), f.server.cpu, float64(rss0)/(1<<20))
	ctx := context.Background()
	c := newAPIClient(srv.api)

	pub, pubPC, pubSID, err := publishThroughSFU(ctx, api, c, f)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer func() { pub.close(); _ = pubPC.Close() }()

	m := newMeter()
	var subs []*subscriber
	defer func() {
		for _, s := range subs {
			_ = s.pc.Close()
		}
	}()
	fmt.Println()
	fmt.Println("| N | fwd pkt/s | server cores | µs/pkt | loss | every packet p50 / p99 (ms) | added p50 / p99 | frame's first packet p50 / p99 | added p50 / p99 | RSS MB | load avg before |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	type point struct{ n, rss float64 }
	var rss []point
	for _, n := range levels {
		joinStart := time.Now()
		more, err := addSubscribers(ctx, api, c, pubSID, n-len(subs), f.joinConc, m)
		subs = append(subs, more...)
		if err != nil {
			return fmt.Errorf("join to %d subscribers: %w", n, err)
		}
		if err := waitFlowing(pub, subs, 15*time.Second); err != nil {
			return fmt.Errorf("%d subscribers: %w", n, err)
		}
		joinTook := time.Since(joinStart)
		time.Sleep(f.settle)
		load := loadAvg()
		lo := pub.sent.Load()
		m.open(lo)
		cpu0, self0, t0 := procCPU(srv.pid()), procCPU(os.Getpid()), time.Now()
		time.Sleep(f.window)
		hi := pub.sent.Load()
		cpu1, self1, el := procCPU(srv.pid()), procCPU(os.Getpid()), time.Since(t0)
		m.close(hi)
		time.Sleep(300 * time.Millisecond) // packets in flight
		got := m.got.Load()
		want := int64(hi-lo) * int64(n)
		r := procRSS(srv.pid())
		rss = append(rss, point{float64(n), float64(r)})
		cpu := cpu1 - cpu0
		us := 0.0
		if got > 0 {
			us = float64(cpu.Microseconds()) / float64(got)
		}
		loss := 0.0
		if want > 0 {
			loss = 100 * (1 - float64(got)/float64(want))
		}
		p50, p99 := m.hist.quantile(0.50), m.hist.quantile(0.99)
		f50, f99 := m.first.quantile(0.50), m.first.quantile(0.99)
		fmt.Printf("| %d | %.0f | %.3f | **%.2f** | %.3f %% | %s / %s | %s / %s | %s / %s | %s / %s | %.1f | %s |\n",
			n, float64(got)/el.Seconds(), cpu.Seconds()/el.Seconds(), us, loss, ms(p50), ms(p99), ms(p50-fp50), ms(p99-fp99),
			ms(f50), ms(f99), ms(f50-ff50), ms(f99-ff99), float64(r)/(1<<20), load)
		fmt.Fprintf(os.Stderr, "  N=%d: joined in %v, generator %.2f cores, %d bad payloads, %d PLIs so far\n",
			n, joinTook.Round(time.Millisecond), (self1-self0).Seconds()/el.Seconds(), m.bad.Load(), pub.plis.Load())
	}
	// RSS per subscriber: least-squares slope of RSS against N.
	if len(rss) > 1 {
		var sx, sy, sxx, sxy float64
		for _, p := range rss {
			sx, sy, sxx, sxy = sx+p.n, sy+p.rss, sxx+p.n*p.n, sxy+p.n*p.rss
		}
		k := float64(len(rss))
		slope := (k*sxy - sx*sy) / (k*sxx - sx*sx)
		fmt.Printf("\nserver RSS per subscriber (slope over N): %.0f KB; idle %.1f MB\n", slope/1024, float64(rss0)/(1<<20))
	}
	if f.profile != "" {
		if err := perfProfile(srv.pid(), f.window, f.profile); err != nil {
			fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		} else {
			fmt.Printf("server profile at N=%d written to %s\n", levels[len(levels)-1], f.profile)
		}
	}
	return nil
}

// measureFloor runs the same publisher straight into one Pion subscriber.
func measureFloor(api *webrtc.API, f fanOutFlags) (*meter, error) {
	pubPC, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	defer pubPC.Close()
	subPC, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	defer subPC.Close()
	pub, err := newPublisherTrack()
	if err != nil {
		return nil, err
	}
	defer pub.close()
	sender, err := pubPC.AddTrack(pub.track)
	if err != nil {
		return nil, err
	}
	pub.readRTCP(sender)
	m := newMeter()
	var last atomic.Int64
	last.Store(-1)
	subPC.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { go receive(tr, m, &last) })
	offer, err := pubPC.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	if offer, err = localDescription(pubPC, offer); err != nil {
		return nil, err
	}
	if err := subPC.SetRemoteDescription(offer); err != nil {
		return nil, err
	}
	answer, err := subPC.CreateAnswer(nil)
	if err != nil {
		return nil, err
	}
	if answer, err = localDescription(subPC, answer); err != nil {
		return nil, err
	}
	if err := pubPC.SetRemoteDescription(answer); err != nil {
		return nil, err
	}
	if err := waitConnected(pubPC, 15*time.Second); err != nil {
		return nil, err
	}
	pub.start(f.fps, f.perFrame, f.size, 3*f.fps)
	deadline := time.Now().Add(10 * time.Second)
	for last.Load() < 0 {
		if time.Now().After(deadline) {
			return nil, errors.New("no media on the direct call")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	m.open(pub.sent.Load())
	time.Sleep(f.floor)
	m.close(pub.sent.Load())
	time.Sleep(300 * time.Millisecond)
	return m, nil
}

// publishThroughSFU pushes one video track with a Pion offer and starts it.
func publishThroughSFU(ctx context.Context, api *webrtc.API, c *apiClient, f fanOutFlags) (*publisher, *webrtc.PeerConnection, string, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return nil, nil, "", err
	}
	fail := func(err error) (*publisher, *webrtc.PeerConnection, string, error) {
		_ = pc.Close()
		return nil, nil, "", err
	}
	pub, err := newPublisherTrack()
	if err != nil {
		return fail(err)
	}
	x, err := pc.AddTransceiverFromTrack(pub.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fail(err)
	}
	pub.readRTCP(x.Sender())
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	if offer, err = localDescription(pc, offer); err != nil {
		return fail(err)
	}
	sid, err := c.newSession(ctx)
	if err != nil {
		return fail(err)
	}
	var resp session.TracksResponse
	if err := c.do(ctx, "POST", "/sessions/"+sid+"/tracks/new", session.TracksRequest{
		SessionDescription: &session.SessionDescription{Type: "offer", SDP: offer.SDP},
		Tracks:             []session.TrackObject{{Location: "local", Mid: x.Mid(), TrackName: "video"}},
	}, &resp); err != nil {
		return fail(err)
	}
	if resp.SessionDescription == nil || resp.SessionDescription.Type != "answer" || len(resp.Tracks) != 1 || resp.Tracks[0].ErrorCode != "" {
		return fail(fmt.Errorf("push: unexpected answer %+v", resp))
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.SessionDescription.SDP}); err != nil {
		return fail(err)
	}
	if err := waitConnected(pc, 15*time.Second); err != nil {
		return fail(err)
	}
	pub.start(f.fps, f.perFrame, f.size, 3*f.fps)
	return pub, pc, sid, nil
}

type subscriber struct {
	pc       *webrtc.PeerConnection
	last     atomic.Int64
	sid, mid string // the subscriber's session and the mid of its pull
}

// addSubscribers pulls the publisher's track into n new sessions.
func addSubscribers(ctx context.Context, api *webrtc.API, c *apiClient, pubSID string, n, conc int, m *meter) ([]*subscriber, error) {
	var (
		mu   sync.Mutex
		out  []*subscriber
		errs []error
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				s, err := subscribe(ctx, api, c, pubSID, m)
				mu.Lock()
				if s != nil {
					out = append(out, s)
				}
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func subscribe(ctx context.Context, api *webrtc.API, c *apiClient, pubSID string, m *meter) (*subscriber, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return nil, err
	}
	s := &subscriber{pc: pc}
	s.last.Store(-1)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { go receive(tr, m, &s.last) })
	sid, err := c.newSession(ctx)
	if err != nil {
		return s, err
	}
	var resp session.TracksResponse
	if err := c.do(ctx, "POST", "/sessions/"+sid+"/tracks/new", session.TracksRequest{
		Tracks: []session.TrackObject{{Location: "remote", SessionID: pubSID, TrackName: "video"}},
	}, &resp); err != nil {
		return s, err
	}
	if !resp.RequiresImmediateRenegotiation || resp.SessionDescription == nil || resp.SessionDescription.Type != "offer" {
		return s, fmt.Errorf("pull: expected an SFU offer, got %+v", resp)
	}
	s.sid = sid
	if len(resp.Tracks) == 1 {
		s.mid = resp.Tracks[0].Mid
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: resp.SessionDescription.SDP}); err != nil {
		return s, err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return s, err
	}
	if answer, err = localDescription(pc, answer); err != nil {
		return s, err
	}
	if err := c.do(ctx, "PUT", "/sessions/"+sid+"/renegotiate", map[string]any{
		"sessionDescription": session.SessionDescription{Type: "answer", SDP: answer.SDP},
	}, nil); err != nil {
		return s, err
	}
	return s, waitConnected(pc, 20*time.Second)
}

// waitFlowing waits until every subscriber received a packet sent after
// the call started.
func waitFlowing(pub *publisher, subs []*subscriber, d time.Duration) error {
	mark := int64(pub.sent.Load())
	deadline := time.Now().Add(d)
	for {
		waiting := 0
		for _, s := range subs {
			if s.last.Load() < mark {
				waiting++
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d subscribers receive no media after %v", waiting, len(subs), d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// perfProfile samples pid with perf for d and writes the flat top of the
// report to path.
func perfProfile(pid int, d time.Duration, path string) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return errors.New("perf not installed")
	}
	data := path + ".data"
	rec := exec.Command(perf, "record", "-q", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", data, "--", "sleep", strconv.Itoa(int(d.Seconds())))
	if out, err := rec.CombinedOutput(); err != nil {
		return fmt.Errorf("perf record: %v: %s", err, out)
	}
	rep := exec.Command(perf, "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "-g", "none", "--percent-limit", "0.5")
	out, err := rep.Output()
	if err != nil {
		return fmt.Errorf("perf report: %w", err)
	}
	return os.WriteFile(path, out, 0o644)
}
