# Shared settings and helpers of the local cluster scripts (sourced, not run).
# Every path, name and address the cluster uses is defined here, so up.sh,
# down.sh and the checks agree on what belongs to the cluster.

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_DIR/../.." && pwd)

# Binaries: the Kubernetes commands and etcd (hack/envtest/build.sh) and the
# cluster's own tools and image tarballs.
K8S_BIN=${K8S_BIN:-$REPO_ROOT/bin/k8s}
# State: rendered configs, certificates, daemon state, logs. Git-ignored.
STATE=${CLUSTER_STATE:-$REPO_ROOT/bin/cluster}
TOOLS_BIN=$STATE/tools
IMAGES=$STATE/images
PKI=$STATE/pki
ETC=$STATE/etc
RUN=$STATE/run        # pids, sockets, containerd state (wiped by down.sh)
VAR=$STATE/var        # etcd data, containerd root, kubelet root, pod logs (wiped by down.sh)
LOGS=$STATE/logs      # daemon logs of the last run (kept for post-mortems)
HOST=$STATE/host      # what up.sh changed outside STATE, for down.sh to undo and check

# Names and addresses. The network namespace holds everything; nothing is
# added to the host's network namespace. Host-visible names carry a short
# hash of the state dir (CLUSTER_ID), so a cluster never mistakes another
# worktree's cluster for its own; up.sh refuses to start next to another one.
CLUSTER_ID=sbc-$(printf '%s' "$STATE" | sha256sum | cut -c1-8)
NETNS=${CLUSTER_NETNS:-$CLUSTER_ID}
NODE=sbnode
NODE_IP=10.200.0.2
NODE_LINK=sbnode0       # veth whose both ends live inside the netns
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
CNI_NETWORK=$CLUSTER_ID
# cgroup directory created in every hierarchy: kubelet's cgroupRoot (pods live
# under it) and, in the pids hierarchy only, a "daemons" child that tracks
# every process the cluster starts, shims included.
CGROUP=$CLUSTER_ID

CONTAINERD_SOCK=$RUN/containerd/containerd.sock
PAUSE_IMAGE=local.test/pause:v1
HELLO_IMAGE=local.test/hello:v1

# Optional cluster DNS: CLUSTER_DNS=1 builds CoreDNS from the Go module proxy
# and deploys it at DNS_SERVICE_IP; without it pods use the host's resolver
# file, whose servers are unreachable from the netns.
CLUSTER_DNS=${CLUSTER_DNS:-0}
DNS_SERVICE_IP=10.96.0.10
COREDNS_VERSION=v1.15.0
COREDNS_IMAGE=local.test/coredns:${COREDNS_VERSION#v}

# Daemons in start order (down.sh stops them in reverse).
DAEMONS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# Kernel settings outside any network namespace that kubelet or kube-proxy
# may change; up.sh saves them, down.sh restores and checks them.
HOST_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max)

NSENTER=(nsenter "--net=/run/netns/$NETNS")

die() { echo "cluster: $*" >&2; exit 1; }
note() { echo "cluster: $*"; }

# kc runs the cluster's kubectl inside the netns as the admin.
kc() { "${NSENTER[@]}" "$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }
# ctrk runs ctr against the cluster's containerd, in the CRI namespace.
ctrk() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# Phase timing: phase NAME starts a phase and ends the previous one;
# phase_done ends the last one. Each line shows the phase's own time and
# the time since the script began.
_t0=${EPOCHREALTIME}
_phase=
_phase_t=
_timings=()
_secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
phase_done() {
	[[ -n $_phase ]] || return 0
	local now=$EPOCHREALTIME
	local line
	line=$(printf '%-38s %6ss  (at %ss)' "$_phase" "$(_secs "$_phase_t" "$now")" "$(_secs "$_t0" "$now")")
	_timings+=("$line")
	echo "cluster: phase $line"
	_phase=
}
phase() { phase_done; _phase=$1; _phase_t=$EPOCHREALTIME; }
# print_timings writes the table of finished phases (to stdout and FILE).
print_timings() { # TITLE [FILE]
	phase_done
	local total
	total=$(_secs "$_t0" "$EPOCHREALTIME")
	{
		echo "== $1: ${total}s"
		printf '   %s\n' "${_timings[@]}"
	} | tee ${2:+"$2"}
}

# waitfor DESC TIMEOUT_S CMD... polls CMD every 0.25 s until it succeeds.
waitfor() {
	local desc=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			echo "cluster: timed out after ${timeout}s waiting for $desc" >&2
			return 1
		fi
		sleep 0.25
	done
}

netns_exists() { [[ -e /run/netns/$NETNS ]]; }

# pid_of NAME prints the recorded PID of a daemon if that process still runs.
pid_of() {
	local f=$RUN/pids/$1.pid p
	[[ -f $f ]] || return 1
	p=$(<"$f")
	[[ -n $p ]] && kill -0 "$p" 2>/dev/null && echo "$p"
}

# cgroup_hierarchies prints the mount point of every cgroup hierarchy (v1
# controllers and the v2 tree; on a cgroup v2 host just /sys/fs/cgroup).
cgroup_hierarchies() {
	awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts | sort -u
}

# pids_tracking_root prints the cluster's directory in the hierarchy that
# tracks processes: the v1 pids controller, or the v2 tree.
pids_tracking_root() {
	local pids
	pids=$(awk '$3 == "cgroup" && $4 ~ /(^|,)pids(,|$)/ { print $2; exit }' /proc/self/mounts)
	if [[ -z $pids ]]; then
		pids=$(awk '$3 == "cgroup2" && $2 == "/sys/fs/cgroup" { print $2; exit }' /proc/self/mounts)
	fi
	[[ -n $pids ]] || return 1
	echo "$pids/$CGROUP"
}

# cgroup_dirs prints the cluster's cgroup directory in every hierarchy that has one.
cgroup_dirs() {
	local h
	while read -r h; do
		[[ -d $h/$CGROUP ]] && echo "$h/$CGROUP"
	done < <(cgroup_hierarchies)
	return 0
}

# cluster_pids prints the PIDs in the cluster's process-tracking cgroup
# subtree (daemons, shims and containers), which are the cluster's by
# construction.
cluster_pids() {
	local d
	d=$(pids_tracking_root) || return 0
	[[ -d $d ]] || return 0
	find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

# own_pids prints every process of this cluster, whatever started it: those
# in the cluster's network namespace or cgroup, and cluster daemons, shims
# and runc whose command line names the state dir (a user's `tail` of a log
# is not the cluster's). A few forks in all, however many processes run.
own_pids() {
	local p argv0 name
	{
		if [[ -f $HOST/netns.inode ]]; then
			find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%p %l\n' 2>/dev/null |
				awk -v want="net:[$(<"$HOST/netns.inode")]" '$2 == want { split($1, a, "/"); print a[3] }'
		fi
		# Patterns come from a file so grep's own command line never matches.
		grep -ls -f <(echo ":/$CGROUP\(/\|\$\)") /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3
		for p in $(grep -lasF -f <(echo "$STATE/") /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
			argv0=
			{ IFS= read -r -d '' argv0 <"/proc/$p/cmdline"; } 2>/dev/null
			name=${argv0##*/}
			[[ " ${DAEMONS[*]} containerd-shim-runc-v2 runc " == *" $name "* ]] && echo "$p"
		done
	} | sort -un | grep -vx -e "$$" -e "$BASHPID" || true
}
