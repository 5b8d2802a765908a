package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/sfu/relay"
)

const benchFleetToken = "switchboard-bench-fleet-token-0123456789"

// runRelay compares forwarding on the publisher's pod with forwarding
// through the pod-to-pod relay, in one run: two `switchboard sfu`
// processes (ordinals 0 and 1) in one fleet, the publisher on pod A, then
// for each N a window with N subscribers on A (same pod) and a window with
// N subscribers on B (cross-pod: A relays the track to B once, B fans it
// out). CPU per forwarded packet is each process's utime+stime over the
// window divided by the packets the subscribers received; latency is
// measured at the subscribers from the send time in every payload.
func runRelay(args []string) error {
	var f fanOutFlags
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	f.server.register(fs)
	fs.StringVar(&f.levels, "subscribers", "1,10,100", "subscriber counts; each is measured on the same pod and across pods")
	fs.DurationVar(&f.window, "window", 10*time.Second, "steady measurement window per case")
	fs.DurationVar(&f.settle, "settle", 2*time.Second, "wait after the joins before the window")
	fs.IntVar(&f.fps, "fps", 30, "frames per second")
	fs.IntVar(&f.perFrame, "packets-per-frame", 9, "packets per frame (30 x 9 = 270 pkt/s)")
	fs.IntVar(&f.size, "size", 1150, "RTP payload bytes")
	fs.IntVar(&f.joinConc, "join-concurrency", 4, "subscribers joining at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var levels []int
	for _, s := range strings.Split(f.levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-subscribers %q: want positive counts", f.levels)
		}
		levels = append(levels, n)
	}
	api, err := newAPI()
	if err != nil {
		return err
	}
	ports := make([]int, 2)
	peers := make([]config.FleetPeer, 2)
	for i := range ports {
		if ports[i], err = freePort("tcp"); err != nil {
			return err
		}
		peers[i] = config.FleetPeer{Ordinal: i, Address: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	pods := make([]*server, 2)
	for i := range pods {
		ordinal := i
		pods[i], err = startServerWith(f.server, ports[i], func(c *config.Pod) []string {
			c.Fleet = &config.Fleet{Token: benchFleetToken, Peers: peers}
			return []string{"-pod-ordinal", strconv.Itoa(ordinal)}
		})
		if err != nil {
			return fmt.Errorf("pod %d: %w", i, err)
		}
		defer pods[i].stop()
	}
	a, b := pods[0], pods[1]
	fmt.Printf("relay: pod A pid %d, pod B pid %d (both pinned to CPU %q); 1 publisher on A, %d fps x %d packets x %d B = %d pkt/s; window %v per case\n",
		a.pid(), b.pid(), f.server.cpu, f.fps, f.perFrame, f.size, f.fps*f.perFrame, f.window)
	// What a live SFU process costs with nothing to forward (timers, GC,
	// the config watcher): part of every per-packet figure below.
	a0, b0, t0 := procCPU(a.pid()), procCPU(b.pid()), time.Now()
	time.Sleep(f.window / 2)
	el := time.Since(t0).Seconds()
	fmt.Printf("idle CPU before the publisher: pod A %.2f ms/s, pod B %.2f ms/s\n",
		float64((procCPU(a.pid())-a0).Microseconds())/1e3/el, float64((procCPU(b.pid())-b0).Microseconds())/1e3/el)
	ctx := context.Background()
	ca, cb := newAPIClient(a.api), newAPIClient(b.api)
	pub, pubPC, pubSID, err := publishThroughSFU(ctx, api, ca, f)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer func() { pub.close(); _ = pubPC.Close() }()

	fmt.Println()
	fmt.Println("| case | N | fwd pkt/s | pod A µs/pkt | pod B µs/pkt | **total µs/pkt** | loss | latency p50 / p99 (ms) | first packet of frame p50 / p99 (ms) | load avg before |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	type result struct {
		us       float64
		p50, p99 time.Duration
	}
	for _, n := range levels {
		var same, cross result
		for _, c := range []struct {
			name   string
			client *apiClient
			out    *result
		}{{"same pod (subscribers on A)", ca, &same}, {"cross-pod (subscribers on B)", cb, &cross}} {
			m := newMeter()
			subs, err := addSubscribers(ctx, api, c.client, pubSID, n, f.joinConc, m)
			if err == nil {
				err = waitFlowing(pub, subs, 15*time.Second)
			}
			if err != nil {
				closeSubscribers(ctx, c.client, subs)
				return fmt.Errorf("%s, N=%d: %w", c.name, n, err)
			}
			time.Sleep(f.settle)
			load := loadAvg()
			lo := pub.sent.Load()
			m.open(lo)
			a0, b0, t0 := procCPU(a.pid()), procCPU(b.pid()), time.Now()
			time.Sleep(f.window)
			hi := pub.sent.Load()
			a1, b1, el := procCPU(a.pid()), procCPU(b.pid()), time.Since(t0)
			m.close(hi)
			time.Sleep(300 * time.Millisecond)
			got := m.got.Load()
			want := int64(hi-lo) * int64(n)
			per := func(d time.Duration) float64 {
				if got == 0 {
					return 0
				}
				return float64(d.Microseconds()) / float64(got)
			}
			loss := 0.0
			if want > 0 {
				loss = 100 * (1 - float64(got)/float64(want))
			}
			*c.out = result{us: per(a1 - a0 + b1 - b0), p50: m.hist.quantile(0.50), p99: m.hist.quantile(0.99)}
			fmt.Printf("| %s | %d | %.0f | %.2f | %.2f | **%.2f** | %.3f %% | %s / %s | %s / %s | %s |\n",
				c.name, n, float64(got)/el.Seconds(), per(a1-a0), per(b1-b0), c.out.us, loss,
				ms(c.out.p50), ms(c.out.p99), ms(m.first.quantile(0.50)), ms(m.first.quantile(0.99)), load)
			closeSubscribers(ctx, c.client, subs)
			// B closes a relay no subscriber uses after its grace: wait for
			// it, so no relay cost leaks into the next same-pod window.
			if c.client == cb {
				time.Sleep(relay.DefaultUnusedGrace + 2*time.Second)
			}
		}
		fmt.Printf("N=%d: relay adds %.2f µs per forwarded packet (cross-pod %.2f / same pod %.2f = %.2fx), latency p50 %+.2f ms, p99 %+.2f ms\n",
			n, cross.us-same.us, cross.us, same.us, cross.us/max(same.us, 1e-9),
			float64(cross.p50-same.p50)/1e6, float64(cross.p99-same.p99)/1e6)
	}
	return nil
}

// closeSubscribers stops the pulls (tracks/close, force) and closes the
// subscribers' PeerConnections, so their down tracks stop costing CPU.
func closeSubscribers(ctx context.Context, c *apiClient, subs []*subscriber) {
	for _, s := range subs {
		if s.sid != "" && s.mid != "" {
			if err := c.do(ctx, "PUT", "/sessions/"+s.sid+"/tracks/close", map[string]any{
				"tracks": []map[string]string{{"mid": s.mid}}, "force": true,
			}, nil); err != nil {
				fmt.Fprintf(os.Stderr, "  close pull of %s: %v\n", s.sid, err)
			}
		}
		_ = s.pc.Close()
	}
}
