package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/config"
)

const (
	benchApp    = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	benchSecret = "switchboard-bench-secret-0123456789abcdef"
)

var errUsage = errors.New("usage: bench fanout|sessions|relay [flags]")

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "fanout":
		return runFanOut(args[1:])
	case "sessions":
		return runSessions(args[1:])
	case "relay":
		return runRelay(args[1:])
	}
	return errUsage
}

// serverFlags are the flags shared by both modes to start the SFU process.
type serverFlags struct {
	binary string
	cpu    string
	keep   bool
}

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.binary, "switchboard", "bin/switchboard", "switchboard binary to run as `switchboard sfu`")
	fs.StringVar(&f.cpu, "server-cpu", "1", "CPU list the server is pinned to with taskset (empty: not pinned)")
	fs.BoolVar(&f.keep, "keep", false, "keep the server's log and config directory")
}

func secretHash() string {
	h := sha256.Sum256([]byte(benchSecret))
	return hex.EncodeToString(h[:])
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// server is a running `switchboard sfu` process.
type server struct {
	cmd  *exec.Cmd
	dir  string
	keep bool
	api  string // http://127.0.0.1:port
	done chan error
}

func freePort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

func startServer(f serverFlags) (*server, error) {
	tcp, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	return startServerWith(f, tcp, nil)
}

// startServerWith starts the SFU on API port tcp; mutate, if set, edits
// its config and returns extra command-line arguments.
func startServerWith(f serverFlags, tcp int, mutate func(*config.Pod) []string) (*server, error) {
	dir, err := os.MkdirTemp("", "switchboard-bench-")
	if err != nil {
		return nil, err
	}
	udp, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	cfg := config.Pod{Version: "bench", Pool: "bench/bench",
		Media: config.Media{Exposure: config.ExposureDirect, UDPPort: udp},
		Apps: []config.App{{ID: benchApp, Name: "bench/bench", SecretSHA256: secretHash(),
			// The load generator is one client IP; lift the per-IP quota.
			RateLimit: config.RateLimit{AuthenticatedPerSecond: 1000000, UnauthenticatedPerSecond: 10}}}}
	var extra []string
	if mutate != nil {
		extra = mutate(&cfg)
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	argv := []string{f.binary, "sfu", "-config", cfgPath, "-listen", fmt.Sprintf("127.0.0.1:%d", tcp),
		"-advertise", "127.0.0.1", "-log-level", "warn"}
	argv = append(argv, extra...)
	if f.cpu != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{ts, "-c", f.cpu}, argv...)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", f.binary, err)
	}
	s := &server{cmd: cmd, dir: dir, keep: f.keep, api: fmt.Sprintf("http://127.0.0.1:%d", tcp), done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); _ = logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			return nil, fmt.Errorf("server exited: %v: %s", err, log)
		default:
		}
		if resp, err := http.Get(s.api + "/health"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("server not healthy after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is the server's process ID (taskset execs the server in place).
func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if s.keep {
		fmt.Printf("server files kept in %s\n", s.dir)
		return
	}
	_ = os.RemoveAll(s.dir)
}

// procCPU is the user+system CPU time of pid, all threads.
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
	const clkTck = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / clkTck
}

// procRSS is the resident set of pid in bytes.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	s := strings.Join(f[:3], " ")
	// The anchors discard runs started with a load above 1.5; on a shared
	// machine we keep them but mark a load above the CPU count.
	if l, err := strconv.ParseFloat(f[0], 64); err == nil && l > float64(machineCPUs()) {
		s += " (busy: discard)"
	}
	return s
}

// machineCPUs counts the machine's CPUs (runtime.NumCPU only sees the
// taskset mask).
func machineCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 1
	}
	n := strings.Count(string(b), "\nprocessor")
	if strings.HasPrefix(string(b), "processor") {
		n++
	}
	return max(n, 1)
}

// apiClient calls the Calls API of the bench app.
type apiClient struct {
	base string
	hc   *http.Client
}

func newAPIClient(base string) *apiClient {
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	return &apiClient{base: base + "/v1/apps/" + benchApp, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// do sends body (JSON-encoded unless nil) and decodes a 2xx answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+benchSecret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

func (c *apiClient) newSession(ctx context.Context) (string, error) {
	var out struct {
		SessionID string `json:"sessionId"`
	}
	if err := c.do(ctx, http.MethodPost, "/sessions/new", nil, &out); err != nil {
		return "", err
	}
	if out.SessionID == "" {
		return "", errors.New("sessions/new: no sessionId")
	}
	return out.SessionID, nil
}
