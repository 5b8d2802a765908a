#!/usr/bin/env bash
# Bring the single-node cluster up inside the private network namespace
# $NETNS: containerd (own root, state and socket), etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy, with the
# bridge CNI. Waits until the node is Ready, the default ServiceAccount exists
# and kube-proxy is healthy, and prints the time of each phase.
#
# First it makes sure of its inputs, each step idempotent and cached:
# Debian's runtime packages (install-runtime.sh), the kube binaries and etcd
# in $K8S_BIN (hack/envtest/build.sh), the tools and images (images.sh) and
# the certificates (certs.sh).
#
# Idempotent: when the cluster is already up and healthy it only says so;
# when a previous run left parts of a cluster, down.sh removes them first.
#
# Outside $STATE it creates only: the netns /run/netns/$NETNS, a cgroup
# directory $CGROUP in every hierarchy, the kernel settings kubelet changes
# (saved first), and the few host paths kubelet and the CNI library hard-code
# (/var/log/containers, /var/lib/cni, /run/containerd/s). down.sh undoes each.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "up.sh needs root (packages, network namespace, cgroups, mounts)"
KUBE_CMDS=(kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)

healthy() {
	local d
	for d in "${DAEMONS[@]}"; do pid_of "$d" >/dev/null || return 1; done
	netns_exists && kc get --raw /readyz >/dev/null 2>&1 &&
		kc wait --for=condition=Ready "node/$NODE" --timeout=5s >/dev/null 2>&1 || return 1
	# Asked for DNS and the cluster has none (or the other way): start over.
	if [[ $CLUSTER_DNS == 1 ]]; then
		kc -n kube-system rollout status deploy/coredns --timeout=5s >/dev/null 2>&1
	else
		if kc -n kube-system get deploy coredns >/dev/null 2>&1; then return 1; fi
	fi
}
if healthy; then
	note "already up; kubeconfig $STATE/kubeconfig (use hack/cluster/kubectl)"
	exit 0
fi
# One cluster per machine: kubelet's host sysctls and /var/log/containers are shared.
for other in /run/netns/sbc-*; do
	[[ -e $other && ${other##*/} != "$NETNS" ]] || continue
	die "another local cluster runs on this machine (netns ${other##*/}); run make cluster-down in its worktree first"
done
if netns_exists || compgen -G "$RUN/pids/*.pid" >/dev/null || [[ -n $(cgroup_dirs) ]]; then
	note "a previous cluster is partly there: tearing it down first"
	"$CLUSTER_DIR/down.sh"
fi

phase "runtime packages"
"$CLUSTER_DIR/install-runtime.sh"
phase "kube binaries and etcd"
"$REPO_ROOT/hack/envtest/build.sh" "$K8S_BIN" "${KUBE_CMDS[@]}"
phase "tools and images"
"$CLUSTER_DIR/images.sh"
phase "certificates"
"$CLUSTER_DIR/certs.sh"
for b in containerd runc ctr nsenter ip iptables curl; do
	command -v "$b" >/dev/null || die "$b missing after install-runtime.sh"
done
((${#CONTAINERD_SOCK} < 100)) || die "socket path $CONTAINERD_SOCK is too long for a unix socket; set CLUSTER_STATE to a shorter dir"

phase "prepare host (netns, cgroups)"
mkdir -p "$RUN/pids" "$VAR" "$LOGS" "$HOST" "$ETC/cni"
rm -f "$LOGS"/*.log
# Record which hard-coded host paths exist before the cluster makes them.
for p in /run/netns /var/log/containers /var/lib/cni /run/containerd; do
	m=$HOST/created${p//\//_}
	[[ -e $p || -e $m ]] || touch "$m"
done
# The netns holds lo and a veth pair whose both ends stay inside: the node
# address needs a real device (no dummy module here), and nothing can leave.
ip netns add "$NETNS"
stat -L -c %i "/run/netns/$NETNS" >"$HOST/netns.inode"
ip -n "$NETNS" link set lo up
ip -n "$NETNS" link add "$NODE_LINK" type veth peer name "${NODE_LINK}p"
ip -n "$NETNS" addr add "$NODE_IP/24" dev "$NODE_LINK"
ip -n "$NETNS" link set "${NODE_LINK}p" up
ip -n "$NETNS" link set "$NODE_LINK" up
ip -n "$NETNS" route add default dev "$NODE_LINK"
# Per-namespace settings: routing between pods and iptables on the bridge.
"${NSENTER[@]}" sysctl -qw net.ipv4.ip_forward=1
"${NSENTER[@]}" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true

# Host kernel settings that kubelet rewrites (saved once, restored by down.sh).
if [[ ! -f $HOST/sysctl.orig ]]; then
	for k in "${HOST_SYSCTLS[@]}"; do
		v=$(sysctl -n "$k" 2>/dev/null) && echo "$k=$v"
	done >"$HOST/sysctl.orig.tmp"
	mv "$HOST/sysctl.orig.tmp" "$HOST/sysctl.orig"
fi

# The cluster's cgroup in every hierarchy: kubelet's cgroupRoot, and the
# process-tracking "daemons" child every daemon (and so every shim) runs in.
v2_root=$(awk '$3 == "cgroup2" && $2 == "/sys/fs/cgroup" { print "yes" }' /proc/self/mounts)
while read -r h; do
	mkdir -p "$h/$CGROUP"
	if [[ -f $h/cpuset.cpus && -f $h/$CGROUP/cpuset.cpus && ! -s $h/$CGROUP/cpuset.cpus ]]; then
		cat "$h/cpuset.cpus" >"$h/$CGROUP/cpuset.cpus" 2>/dev/null || cat "$h/cpuset.effective_cpus" >"$h/$CGROUP/cpuset.cpus"
		cat "$h/cpuset.mems" >"$h/$CGROUP/cpuset.mems" 2>/dev/null || cat "$h/cpuset.effective_mems" >"$h/$CGROUP/cpuset.mems"
	fi
done < <(cgroup_hierarchies)
if [[ -n $v2_root ]]; then
	# cgroup v2 host (untested here): delegate the controllers kubelet needs.
	for c in cpuset cpu io memory hugetlb pids; do
		echo "+$c" >"/sys/fs/cgroup/cgroup.subtree_control" 2>/dev/null || true
		echo "+$c" >"/sys/fs/cgroup/$CGROUP/cgroup.subtree_control" 2>/dev/null || true
	done
fi
track=$(pids_tracking_root)/daemons
mkdir -p "$track"

# start_daemon NAME CMD...: run CMD in the netns, in the tracking cgroup, in
# its own session, logging to $LOGS/NAME.log; record its PID.
start_daemon() {
	local n=$1
	shift
	setsid bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' start "$track" \
		"${NSENTER[@]}" "$@" >"$LOGS/$n.log" 2>&1 </dev/null &
	echo $! >"$RUN/pids/$n.pid"
}
# alive NAME fails with the log's tail when the daemon has died.
alive() {
	pid_of "$1" >/dev/null && return 0
	echo "cluster: $1 exited; last lines of $LOGS/$1.log:" >&2
	tail -n 20 "$LOGS/$1.log" >&2
	return 1
}
# waitup NAME TIMEOUT CMD...: like waitfor, but stops early when NAME died.
waitup() {
	local n=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		alive "$n" || exit 1
		((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $n (log: $LOGS/$n.log)"
		sleep 0.25
	done
}

# Configs rendered from hack/cluster/config.
dns_line="# no cluster DNS (CLUSTER_DNS=1 adds CoreDNS)"
[[ $CLUSTER_DNS != 1 ]] || dns_line="clusterDNS: [$DNS_SERVICE_IP]"
render() { # SRC DST
	sed -e "s#@STATE@#$STATE#g; s#@VAR@#$VAR#g; s#@RUN@#$RUN#g; s#@ETC@#$ETC#g; s#@PKI@#$PKI#g" \
		-e "s#@NODE@#$NODE#g; s#@NODE_IP@#$NODE_IP#g; s#@POD_CIDR@#$POD_CIDR#g; s#@NODE_POD_CIDR@#$NODE_POD_CIDR#g" \
		-e "s#@CGROUP@#$CGROUP#g; s#@CNI_NETWORK@#$CNI_NETWORK#g; s#@PAUSE_IMAGE@#$PAUSE_IMAGE#g" \
		-e "s|@CLUSTER_DNS_LINE@|$dns_line|g" \
		"$CLUSTER_DIR/config/$1" >"$ETC/$2"
}
render containerd.toml containerd.toml
render cni-bridge.conflist cni/10-bridge.conflist
render kubelet.yaml kubelet.yaml
render kube-proxy.yaml kube-proxy.yaml
cp "$PKI/admin.kubeconfig" "$STATE/kubeconfig"

phase "containerd"
start_daemon containerd containerd --config "$ETC/containerd.toml"
waitup containerd 60 ctr --address "$CONTAINERD_SOCK" version

phase "import pause image"
ctrk images import "$IMAGES/pause.tar" >/dev/null || die "import $IMAGES/pause.tar failed"
if [[ $CLUSTER_DNS == 1 ]]; then
	ctrk images import "$IMAGES/coredns.tar" >/dev/null || die "import $IMAGES/coredns.tar failed"
fi

phase "etcd"
start_daemon etcd "$K8S_BIN/etcd" --name "$NODE" --data-dir "$VAR/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster "$NODE=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
	--unsafe-no-fsync --log-level warn
waitup etcd 60 "${NSENTER[@]}" curl -sf http://127.0.0.1:2381/health

phase "kube-apiserver"
start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
	--etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=6443 \
	--advertise-address="$NODE_IP" --service-cluster-ip-range="$SERVICE_CIDR" \
	--allow-privileged=true --authorization-mode=Node,RBAC --profiling=false \
	--client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
	--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
	--kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key"
waitup kube-apiserver 180 kc get --raw /readyz

phase "controllers, kubelet, kube-proxy"
start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
	--kubeconfig="$PKI/controller-manager.kubeconfig" \
	--authentication-kubeconfig="$PKI/controller-manager.kubeconfig" \
	--authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
	--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true --profiling=false \
	--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
	--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
	--allocate-node-cidrs=true --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 \
	--service-cluster-ip-range="$SERVICE_CIDR"
start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$PKI/scheduler.kubeconfig" \
	--authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
	--bind-address=127.0.0.1 --leader-elect=false --profiling=false
start_daemon kubelet "$K8S_BIN/kubelet" --config="$ETC/kubelet.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
	--root-dir="$VAR/kubelet" --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
start_daemon kube-proxy "$K8S_BIN/kube-proxy" --config="$ETC/kube-proxy.yaml" --v=1

phase "node registered"
waitup kubelet 180 kc get node "$NODE"

phase "node Ready"
waitup kubelet 180 kc wait --for=condition=Ready "node/$NODE" --timeout=2s

phase "default ServiceAccount"
waitup kube-controller-manager 120 kc get serviceaccount default -n default
phase "kube-proxy healthy"
waitup kube-proxy 120 "${NSENTER[@]}" curl -sf http://127.0.0.1:10256/healthz
if [[ $CLUSTER_DNS == 1 ]]; then
	phase "CoreDNS Ready"
	sed -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#g; s#@DNS_SERVICE_IP@#$DNS_SERVICE_IP#g" \
		"$CLUSTER_DIR/manifests/coredns.yaml" | kc apply -f - >/dev/null
	waitup kubelet 180 kc -n kube-system rollout status deploy/coredns --timeout=5s
fi
for d in "${DAEMONS[@]}"; do alive "$d" || die "$d died during start"; done

print_timings "cluster up" "$LOGS/timings-up.txt"
kc get nodes -o wide
cat <<EOF
cluster: up. Inside the network namespace "$NETNS":
  kubeconfig   $STATE/kubeconfig  (API server https://127.0.0.1:6443 inside the netns)
  kubectl      hack/cluster/kubectl get pods -A
  any command  hack/cluster/in-netns CMD...  (KUBECONFIG set)
  images       ctr --address $CONTAINERD_SOCK -n k8s.io images import IMAGE.tar
  tear down    make cluster-down
EOF
