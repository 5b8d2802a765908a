#!/usr/bin/env bash
# make bench: build the server and the load generators, then run
#   (a) SFU fan-out, 1 publisher at 2.5 Mbps to N subscribers, server in its own process
#   (b) session API: sessions/new + tracks/new with a real Chrome offer
#   (c) forwarding micro-benchmarks with -benchmem (0 allocs per forwarded packet)
#   (d) TURN relay (turn/internal/turnbench)
#   (e) cross-pod relay: two SFU processes in one fleet, forwarding on the publisher's pod beside
#       forwarding through the pod-to-pod relay (CPU per packet, latency), and the relay hop's
#       micro-benchmark with -benchmem (0 allocs per relayed packet)
# and print the figures. Everything runs on loopback. See docs/benchmarks.md.
#
# Environment:
#   BENCH_ONLY=fanout,sessions,micro,turn,relay   subset to run (default: all)
#   BENCH_WINDOW=10s                        fan-out steady window per N
#   BENCH_SUBSCRIBERS=1,10,100,300          fan-out levels
#   BENCH_PROFILE=file                      perf profile of the SFU at the last level
#   BENCH_SESSIONS_DURATION=15s             session API run time per concurrency
#   BENCH_RELAY_SUBSCRIBERS=1,10,100        subscriber counts of the cross-pod comparison
set -euo pipefail
cd "$(dirname "$0")/.."

only="${BENCH_ONLY:-fanout,sessions,micro,turn,relay}"
want() { [[ ",$only," == *",$1,"* ]]; }

# Server on CPU 1, load generator on CPU 0, when taskset and two CPUs exist.
gen=()
server_cpu=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	gen=(taskset -c 0)
	server_cpu=1
fi

echo "== machine"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpus:    $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "kernel:  $(uname -r)"
echo "go:      $(go version | cut -d' ' -f3)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "$server_cpu" ]; then
	echo "pinning: server CPU $server_cpu, load generator CPU 0 (taskset)"
else
	echo "pinning: none"
fi

echo
echo "== build"
mkdir -p bin
go build -o bin/switchboard ./cmd/switchboard
go build -o bin/sfubench ./sfu/internal/bench

if want fanout; then
	echo
	echo "== (a) SFU fan-out"
	args=(fanout -switchboard bin/switchboard -server-cpu "$server_cpu"
		-subscribers "${BENCH_SUBSCRIBERS:-1,10,100,300}" -window "${BENCH_WINDOW:-10s}")
	if [ -n "${BENCH_PROFILE:-}" ]; then
		args+=(-profile "$BENCH_PROFILE")
	fi
	"${gen[@]}" bin/sfubench "${args[@]}"
fi

if want sessions; then
	echo
	echo "== (b) session API (server unpinned: both CPUs)"
	bin/sfubench sessions -switchboard bin/switchboard -server-cpu "" \
		-concurrency 1,4 -duration "${BENCH_SESSIONS_DURATION:-15s}"
fi

if want micro; then
	echo
	echo "== (c) forwarding micro-benchmarks (-benchmem)"
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	# The forwarding path alone (no-op writers): must be 0 allocs/op.
	go test -run '^$' -bench 'BenchmarkFanOut' -benchmem -benchtime 2000x ./sfu/forward/ | tee "$out" | grep -E '^(Benchmark|ok|FAIL)'
	if ! grep -q '^BenchmarkFanOut' "$out"; then
		echo "bench: no BenchmarkFanOut lines" >&2
		exit 1
	fi
	if grep '^BenchmarkFanOut' "$out" | grep -v ' 0 allocs/op'; then
		echo "bench: the forwarding path allocates (see above)" >&2
		exit 1
	fi
	echo "forwarding path: 0 allocs/op at every N"
	# Through the SFU's Pion stack (interceptors, SRTP, UDP mux, sendto). allocs/op
	# counts the whole process, including the in-process subscribers' receive side
	# and per-second timers (RTCP reports, ICE checks); the allocation test below
	# measures the write path alone.
	go test -run 'TestForwardingThroughPionAllocatesNothing' -bench 'BenchmarkForwardThroughPion' -benchmem -benchtime 20000x -v ./sfu/ |
		tee "$out" | grep -E '(ns/op|^ok|^FAIL|^--- )'
	awk '/^BenchmarkForwardThroughPion/ { split($1, a, "="); n = a[2] + 0; for (i = 2; i < NF; i++) if ($(i+1) == "allocs/op") printf "  N=%d: %.3f allocs per forwarded packet (process-wide)\n", n, $i / n }' "$out"
	grep -q -- '--- PASS: TestForwardingThroughPionAllocatesNothing' "$out" || { echo "bench: Pion write path allocates" >&2; exit 1; }
	echo "write path through Pion: 0 allocs per forwarded packet (TestForwardingThroughPionAllocatesNothing)"
fi

if want turn; then
	echo
	echo "== (d) TURN relay"
	servers=switchboard
	if command -v turnserver >/dev/null; then
		servers=switchboard,coturn
	fi
	go run ./turn/internal/turnbench -servers "$servers" -clients 200 -rate 250 -duration 10s
fi

if want relay; then
	echo
	echo "== (e) cross-pod relay"
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	# Both SFU processes on the server CPU, as (a): the relay's cost is
	# pod A's plus pod B's CPU.
	"${gen[@]}" bin/sfubench relay -switchboard bin/switchboard -server-cpu "$server_cpu" \
		-subscribers "${BENCH_RELAY_SUBSCRIBERS:-1,10,100}" -window "${BENCH_WINDOW:-10s}"
	echo
	echo "relay hop alone (sfu/relay, source down track -> frame -> loopback TCP -> destination track), -benchmem:"
	go test -run 'TestRelayHopAllocatesNothingPerPacket' -bench 'BenchmarkRelayPacket' -benchmem -benchtime 50000x -v ./sfu/relay/ |
		tee "$out" | grep -E '(ns/op|allocations per relayed packet|^ok|^FAIL|^--- )'
	grep -q '^BenchmarkRelayPacket.*ns/op' "$out" || { echo "bench: no BenchmarkRelayPacket result" >&2; exit 1; }
	if grep '^BenchmarkRelayPacket.*ns/op' "$out" | grep -v ' 0 allocs/op'; then
		echo "bench: the relay hop allocates (see above)" >&2
		exit 1
	fi
	grep -q -- '--- PASS: TestRelayHopAllocatesNothingPerPacket' "$out" || { echo "bench: relay allocation test failed" >&2; exit 1; }
	echo "relay hop: 0 allocs/op"
fi
