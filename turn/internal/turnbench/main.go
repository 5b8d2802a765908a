// Command turnbench measures the CPU a TURN server spends per relayed
// datagram, and the loss, on loopback: K clients each allocate a UDP relay,
// bind a channel to a sink and send fixed-size ChannelData at a fixed rate;
// the server runs in its own process so its CPU time can be read from
// /proc. It runs Switchboard's server (this binary re-executed) and, when
// installed, Debian's coturn, with the same client.
//
//	go run ./turn/internal/turnbench               # both servers, 200 x 250 pkt/s x 1200 B
//	go run ./turn/internal/turnbench -servers switchboard -clients 100
//
// It only ever sends to 127.0.0.1.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"

	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/turn"
)

const (
	benchSecret = "turnbench-static-secret"
	benchRealm  = "bench"
	benchKeyID  = "bench"
	benchApp    = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

var errNoCoturn = errors.New("turnserver not installed (apt-get install coturn)")

var (
	cpuProfile  string
	serverProcs int
)

func main() {
	serve := flag.String("serve", "", "internal: run the Switchboard TURN server on this UDP address")
	serveStock := flag.String("serve-stock", "", "internal: run stock pion/turn (default buffers, nil permission handler) on this UDP address")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write the Switchboard server's CPU profile here")
	flag.IntVar(&serverProcs, "server-procs", 0, "GOMAXPROCS of the Switchboard server process (0: the Go default)")
	servers := flag.String("servers", "switchboard,coturn", "servers to measure: switchboard, coturn, pion (stock pion/turn v4, for reference)")
	clients := flag.Int("clients", 200, "TURN clients")
	rate := flag.Int("rate", 250, "packets per second per client")
	size := flag.Int("size", 1200, "payload bytes per packet")
	dur := flag.Duration("duration", 10*time.Second, "measured send window")
	warm := flag.Duration("warmup", 2*time.Second, "unmeasured send time before the window")
	flag.Parse()
	if *serveStock != "" {
		if err := serveStockPion(*serveStock); err != nil {
			fmt.Fprintln(os.Stderr, "turnbench stock server:", err)
			os.Exit(1)
		}
		return
	}
	if *serve != "" {
		if err := serveSwitchboard(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "turnbench server:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Printf("turnbench: %d clients x %d pkt/s x %d B = %d pkt/s, window %s, GOMAXPROCS %d, %d CPUs\n",
		*clients, *rate, *size, *clients**rate, *dur, runtime.GOMAXPROCS(0), runtime.NumCPU())
	failed := false
	for _, name := range strings.Split(*servers, ",") {
		res, err := runOne(strings.TrimSpace(name), *clients, *rate, *size, *dur, *warm)
		if errors.Is(err, errNoCoturn) {
			fmt.Printf("%-12s skipped: %v\n", name, err)
			continue
		}
		if err != nil {
			fmt.Printf("%-12s error: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Println(res)
	}
	if failed {
		os.Exit(1)
	}
}

// serveSwitchboard runs the server under test until stdin closes.
func serveSwitchboard(addr string) error {
	pc, err := turn.ListenUDP(addr, 0)
	if err != nil {
		return err
	}
	pod := benchPod()
	srv, err := turn.New(turn.Config{
		PacketConns:     []net.PacketConn{pc},
		RelayIP:         netip.MustParseAddr("127.0.0.1"),
		Realm:           benchRealm,
		Pod:             pod,
		AllocationQuota: 100000,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-sig:
	case <-eof:
	}
	return srv.Close()
}

// serveStockPion runs pion/turn v4 as its examples do: default socket
// buffers, a static relay address, pion's REST auth handler.
func serveStockPion(addr string) error {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	srv, err := pionturn.NewServer(pionturn.ServerConfig{
		Realm:       benchRealm,
		AuthHandler: pionturn.LongTermTURNRESTAuthHandler(benchSecret, nil),
		PacketConnConfigs: []pionturn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &pionturn.RelayAddressGeneratorStatic{
				RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1",
			},
		}},
	})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

func benchPod() *config.Pod {
	p := &config.Pod{
		TURN: config.TURN{Enabled: true, Realm: benchRealm, AllowedPeerCIDRs: []string{"127.0.0.0/8"}},
		Apps: []config.App{{ID: benchApp, Name: "bench/app", SecretSHA256: strings.Repeat("0", 64),
			TURNKey: &config.TURNKey{ID: benchKeyID, TokenSHA256: strings.Repeat("0", 64), HMACSecret: benchSecret}}},
	}
	p.Default()
	return p
}

type result struct {
	name          string
	sent, recv    uint64
	cpu           time.Duration
	window        time.Duration
	rcvbufErrs    int64
	listenerDrops int64
	sinkDrops     int64
	p50, p99      time.Duration
}

func (r result) String() string {
	loss := 0.0
	if r.sent > 0 {
		loss = 100 * float64(r.sent-min(r.recv, r.sent)) / float64(r.sent)
	}
	return fmt.Sprintf("%-12s %6.2f µs/pkt  sent %d  received %d  loss %.3f%%  RcvbufErrors +%d (server socket %d, sinks %d)  server CPU %.2fs of %.1fs (%.0f%% of one core)  latency p50 %s p99 %s",
		r.name, float64(r.cpu.Microseconds())/float64(max(r.recv, 1)), r.sent, r.recv, loss, r.rcvbufErrs, r.listenerDrops, r.sinkDrops,
		r.cpu.Seconds(), r.window.Seconds(), 100*r.cpu.Seconds()/r.window.Seconds(), r.p50, r.p99)
}

func freePort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func runOne(name string, clients, rate, size int, dur, warm time.Duration) (result, error) {
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var cmd *exec.Cmd
	switch name {
	case "switchboard":
		self, err := os.Executable()
		if err != nil {
			return result{}, err
		}
		cmd = exec.Command(self, "-serve", addr, "-cpuprofile", cpuProfile)
		if serverProcs > 0 {
			cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", serverProcs))
		}
	case "pion":
		self, err := os.Executable()
		if err != nil {
			return result{}, err
		}
		cmd = exec.Command(self, "-serve-stock", addr)
	case "coturn":
		bin, err := exec.LookPath("turnserver")
		if err != nil {
			return result{}, errNoCoturn
		}
		cmd = exec.Command(bin, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "-p", strconv.Itoa(port),
			"--use-auth-secret", "--static-auth-secret="+benchSecret, "--realm="+benchRealm,
			"--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--no-software-attribute",
			"--min-port=40000", "--max-port=59999", "--log-file=stdout", "--no-stdout-log", "--simple-log")
	default:
		return result{}, fmt.Errorf("unknown server %q", name)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return result{}, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(out)) }()
	if err := waitForServer(addr, 10*time.Second); err != nil {
		return result{}, err
	}

	user := func(i int) (string, string) {
		exp := time.Now().Add(time.Hour).Unix()
		u := fmt.Sprintf("%d:bench%d", exp, i)
		if name == "switchboard" { // key ID in the middle, see turn.ParseUsername
			u = fmt.Sprintf("%d:%s:c%d", exp, benchKeyID, i)
		}
		return u, turn.Password([]byte(benchSecret), u)
	}
	res, err := drive(addr, user, clients, rate, size, dur, warm, cmd.Process.Pid)
	res.name = name
	return res, err
}

// waitForServer sends Binding requests until one is answered.
func waitForServer(addr string, timeout time.Duration) error {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		_, _ = c.Write(m.Raw)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(buf); err == nil {
			return nil
		}
	}
	return fmt.Errorf("server on %s did not answer Binding within %s", addr, timeout)
}

type client struct {
	conn  *net.UDPConn
	relay netip.AddrPort
}

func drive(addr string, user func(int) (string, string), clients, rate, size int, dur, warm time.Duration, pid int) (result, error) {
	const sinks = 4
	var sinkConns []*net.UDPConn
	var recv atomic.Uint64
	var measuring atomic.Bool
	lat := make([][]time.Duration, sinks)
	var wg sync.WaitGroup
	for i := 0; i < sinks; i++ {
		s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return result{}, err
		}
		turn.SetSocketBuffers(s, 8<<20)
		sinkConns = append(sinkConns, s)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := s.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if n >= 9 && buf[8] == 1 { // sent inside the window
					recv.Add(1)
					sent := int64(binary.BigEndian.Uint64(buf[:8]))
					if len(lat[i]) < 1_000_000 {
						lat[i] = append(lat[i], time.Duration(time.Now().UnixNano()-sent))
					}
				}
			}
		}(i)
	}
	defer func() {
		for _, s := range sinkConns {
			_ = s.Close()
		}
		wg.Wait()
	}()

	cls := make([]*client, clients)
	for i := range cls {
		u, p := user(i)
		c, err := setupClient(addr, u, p, sinkConns[i%sinks].LocalAddr().(*net.UDPAddr).AddrPort())
		if err != nil {
			return result{}, fmt.Errorf("client %d: %w", i, err)
		}
		cls[i] = c
		defer c.conn.Close()
	}

	errsBefore := rcvbufErrors()
	sinkPorts := map[int]bool{}
	for _, sc := range sinkConns {
		sinkPorts[sc.LocalAddr().(*net.UDPAddr).Port] = true
	}
	serverPort := map[int]bool{}
	if ua, err := net.ResolveUDPAddr("udp4", addr); err == nil {
		serverPort[ua.Port] = true
	}
	listenerDrops0, sinkDrops0 := socketDrops(serverPort), socketDrops(sinkPorts)
	payload := make([]byte, 4+size)
	binary.BigEndian.PutUint16(payload[0:], 0x4000)
	binary.BigEndian.PutUint16(payload[2:], uint16(size))
	interval := time.Second / time.Duration(rate)
	var sent uint64
	var cpu0 time.Duration
	var t0 time.Time
	start := time.Now()
	end := start.Add(warm + dur)
	inWindow := false
	for tick := start; ; tick = tick.Add(interval) {
		if d := time.Until(tick); d > 0 {
			time.Sleep(d)
		}
		now := time.Now()
		if now.After(end) {
			break
		}
		if !inWindow && now.Sub(start) >= warm {
			inWindow = true
			measuring.Store(true)
			cpu0 = procCPU(pid)
			t0 = now
		}
		if inWindow {
			payload[4+8] = 1
		}
		for _, c := range cls {
			binary.BigEndian.PutUint64(payload[4:], uint64(time.Now().UnixNano()))
			if _, err := c.conn.Write(payload); err == nil && inWindow {
				sent++
			}
		}
	}
	window := time.Since(t0)
	cpu := procCPU(pid) - cpu0
	time.Sleep(500 * time.Millisecond) // drain
	res := result{sent: sent, recv: recv.Load(), cpu: cpu, window: window, rcvbufErrs: rcvbufErrors() - errsBefore,
		listenerDrops: socketDrops(serverPort) - listenerDrops0, sinkDrops: socketDrops(sinkPorts) - sinkDrops0}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) > 0 {
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		res.p50 = all[len(all)/2].Round(time.Microsecond)
		res.p99 = all[len(all)*99/100].Round(time.Microsecond)
	}
	return res, nil
}

func setupClient(addr, user, pass string, sink netip.AddrPort) (*client, error) {
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		return nil, err
	}
	turn.SetSocketBuffers(conn, 1<<20)
	rt := stun.RawAttribute{Type: 0x0019, Value: []byte{17, 0, 0, 0}}
	res, err := roundTrip(conn, stun.NewType(stun.MethodAllocate, stun.ClassRequest), rt)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if realm.GetFrom(res) != nil || nonce.GetFrom(res) != nil {
		conn.Close()
		return nil, errors.New("no realm/nonce in the 401")
	}
	auth := []stun.Setter{stun.NewUsername(user), realm, nonce, stun.NewLongTermIntegrity(user, realm.String(), pass), stun.Fingerprint}
	res, err = roundTrip(conn, append([]stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest), rt}, auth...)...)
	if err != nil || res.Type.Class != stun.ClassSuccessResponse {
		conn.Close()
		return nil, fmt.Errorf("allocate failed: %v %v", err, res)
	}
	var relay stun.XORMappedAddress
	if err := relay.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		conn.Close()
		return nil, err
	}
	peer := &stun.XORMappedAddress{IP: sink.Addr().AsSlice(), Port: int(sink.Port())}
	peerSetter := xorPeer{peer}
	res, err = roundTrip(conn, append([]stun.Setter{stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		stun.RawAttribute{Type: 0x000C, Value: []byte{0x40, 0, 0, 0}}, peerSetter}, auth...)...)
	if err != nil || res.Type.Class != stun.ClassSuccessResponse {
		conn.Close()
		return nil, fmt.Errorf("channel bind failed: %v %v", err, res)
	}
	ip, _ := netip.AddrFromSlice(relay.IP)
	return &client{conn: conn, relay: netip.AddrPortFrom(ip.Unmap(), uint16(relay.Port))}, nil
}

func roundTrip(c *net.UDPConn, setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for attempt := 0; attempt < 5; attempt++ {
		if _, err := c.Write(req.Raw); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() == nil && m.TransactionID == req.TransactionID {
				_ = c.SetReadDeadline(time.Time{})
				return m, nil
			}
		}
	}
	return nil, errors.New("no response")
}

// procCPU is the user+system CPU time of pid (all threads).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// rcvbufErrors is the kernel's Udp RcvbufErrors counter.
func rcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var hdr []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		f := strings.Fields(line)
		if hdr == nil {
			hdr = f
			continue
		}
		for i, h := range hdr {
			if h == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}

type xorPeer struct{ a *stun.XORMappedAddress }

func (p xorPeer) AddTo(m *stun.Message) error { return p.a.AddToAs(m, stun.AttrXORPeerAddress) }

// socketDrops sums the drops column of /proc/net/udp for sockets bound to
// 127.0.0.1 on the given ports.
func socketDrops(ports map[int]bool) int64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return -1
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 {
			continue
		}
		host, portHex, ok := strings.Cut(f[1], ":")
		if !ok || host != "0100007F" {
			continue
		}
		port, err := strconv.ParseInt(portHex, 16, 32)
		if err != nil || !ports[int(port)] {
			continue
		}
		d, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		total += d
	}
	return total
}
