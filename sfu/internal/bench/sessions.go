package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

func runSessions(args []string) error {
	var sf serverFlags
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	sf.register(fs)
	offerPath := fs.String("offer", "sfu/testdata/chrome-offer-av.sdp", "Chrome offer pushed with tracks/new (mid 0 audio, mid 1 video)")
	concs := fs.String("concurrency", "1,4", "closed-loop client counts")
	dur := fs.Duration("duration", 15*time.Second, "run time per concurrency")
	allocN := fs.Int("alloc-sessions", 300, "sessions run against an in-process server to count allocated bytes (0: skip)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := os.ReadFile(*offerPath)
	if err != nil {
		return err
	}
	req := session.TracksRequest{
		SessionDescription: &session.SessionDescription{Type: "offer", SDP: string(raw)},
		Tracks: []session.TrackObject{
			{Location: "local", Mid: "0", TrackName: "a"},
			{Location: "local", Mid: "1", TrackName: "v"},
		},
	}
	fmt.Printf("session API: sessions/new + tracks/new (push audio+video, %s), closed loop, %v per concurrency\n", *offerPath, *dur)
	fmt.Println()
	fmt.Println("| concurrency | sessions/s | p50 (ms) | p99 (ms) | sessions/new p99 | tracks/new p99 | server CPU ms/session | server cores | errors | load avg before |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range strings.Split(*concs, ",") {
		conc, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || conc < 1 {
			return fmt.Errorf("-concurrency %q", *concs)
		}
		// A fresh server per concurrency: unconnected sessions of the
		// previous run would otherwise still be held (connect wait).
		srv, err := startServer(sf)
		if err != nil {
			return err
		}
		load := loadAvg()
		r, err := sessionLoop(newAPIClient(srv.api), req, conc, *dur, srv.pid())
		srv.stop()
		if err != nil {
			return err
		}
		n := float64(len(r.total))
		fmt.Printf("| %d | **%.0f** | %s | **%s** | %s | %s | %.2f | %.2f | %d | %s |\n", conc, n/r.elapsed.Seconds(),
			ms(r.total.q(0.5)), ms(r.total.q(0.99)), ms(r.newS.q(0.99)), ms(r.tracks.q(0.99)),
			float64(r.cpu.Microseconds())/1000/n, r.cpu.Seconds()/r.elapsed.Seconds(), r.errors, load)
	}
	if *allocN > 0 {
		b, err := allocPerSession(req, *allocN)
		if err != nil {
			return fmt.Errorf("alloc: %w", err)
		}
		fmt.Printf("\nallocated per session (in-process server, %d sequential sessions, client side included): %.2f MB\n", *allocN, b/(1<<20))
	}
	return nil
}

type loopResult struct {
	total, newS, tracks durations
	errors              int64
	cpu, elapsed        time.Duration
}

// sessionLoop runs conc clients for d, each creating a session and pushing
// the offer as fast as answers come back.
func sessionLoop(c *apiClient, req session.TracksRequest, conc int, d time.Duration, pid int) (loopResult, error) {
	ctx := context.Background()
	// Warm up the connection pool and the server's code paths.
	for i := 0; i < 5; i++ {
		if _, _, err := oneSession(ctx, c, req); err != nil {
			return loopResult{}, err
		}
	}
	var (
		mu   sync.Mutex
		r    loopResult
		errN atomic.Int64
		wg   sync.WaitGroup
		last error
	)
	cpu0, t0 := procCPU(pid), time.Now()
	end := t0.Add(d)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tot, ns, tr durations
			for time.Now().Before(end) {
				start := time.Now()
				a, b, err := oneSession(ctx, c, req)
				if err != nil {
					errN.Add(1)
					mu.Lock()
					last = err
					mu.Unlock()
					continue
				}
				tot, ns, tr = append(tot, time.Since(start)), append(ns, a), append(tr, b)
			}
			mu.Lock()
			r.total, r.newS, r.tracks = append(r.total, tot...), append(r.newS, ns...), append(r.tracks, tr...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.cpu, r.elapsed, r.errors = procCPU(pid)-cpu0, time.Since(t0), errN.Load()
	if len(r.total) == 0 {
		return r, fmt.Errorf("no session succeeded: %v", last)
	}
	if last != nil {
		fmt.Fprintf(os.Stderr, "  concurrency %d: %d errors, last: %v\n", conc, r.errors, last)
	}
	return r, nil
}

func oneSession(ctx context.Context, c *apiClient, req session.TracksRequest) (time.Duration, time.Duration, error) {
	t0 := time.Now()
	sid, err := c.newSession(ctx)
	if err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	var resp session.TracksResponse
	if err := c.do(ctx, "POST", "/sessions/"+sid+"/tracks/new", req, &resp); err != nil {
		return 0, 0, err
	}
	if resp.SessionDescription == nil || resp.SessionDescription.Type != "answer" || len(resp.Tracks) != len(req.Tracks) {
		return 0, 0, fmt.Errorf("tracks/new: unexpected answer %+v", resp)
	}
	for _, t := range resp.Tracks {
		if t.ErrorCode != "" {
			return 0, 0, fmt.Errorf("tracks/new: track %s: %s %s", t.TrackName, t.ErrorCode, t.ErrorDescription)
		}
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// allocPerSession counts the bytes allocated per session with the server in
// this process (runtime.MemStats cannot be read from another process). The
// HTTP client and JSON decoding of this side are included.
func allocPerSession(req session.TracksRequest, n int) (float64, error) {
	srvCfg, err := benchPodConfig()
	if err != nil {
		return 0, err
	}
	s, err := sfu.New(sfu.Options{Config: srvCfg, UDPAddr: "127.0.0.1:0", AdvertiseIPs: []string{"127.0.0.1"}, Logger: quietLogger()})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	c := newAPIClient("http://" + ln.Addr().String())
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, _, err := oneSession(ctx, c, req); err != nil {
			return 0, err
		}
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := 0; i < n; i++ {
		if _, _, err := oneSession(ctx, c, req); err != nil {
			return 0, err
		}
	}
	runtime.ReadMemStats(&m1)
	if m1.TotalAlloc <= m0.TotalAlloc {
		return 0, errors.New("no allocation counted")
	}
	return float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n), nil
}

func benchPodConfig() (*config.Pod, error) {
	return config.Parse([]byte(fmt.Sprintf(`{"version":"bench","media":{"exposure":"Direct","udpPort":3478},
		"apps":[{"id":%q,"name":"bench/bench","secretSHA256":%q,"rateLimit":{"authenticatedPerSecond":1000000,"unauthenticatedPerSecond":10}}]}`,
		benchApp, secretHash())))
}
