#!/usr/bin/env bash
# Tear the local cluster down and prove nothing is left.
#
# Removes, in order: the pods (through the kubelet, while it still runs),
# the daemons (by recorded PID), any process still in the cluster's cgroup or
# network namespace (shims, containers, helpers started inside the netns),
# every mount under $STATE, the cluster's cgroups, the network namespace
# (its veths, bridge and iptables rules go with it), the host kernel settings
# kubelet changed (restored to the saved values), the files kubelet and the
# CNI library write to hard-coded host paths, and the run-time state
# ($STATE/run, $STATE/var). Certificates, images and logs are kept.
#
# Then it checks: no recorded PID alive; no process of the cluster by name,
# netns, cgroup or command line; no mount under $STATE; no netns; no cgroup;
# sysctls equal to the saved values; no stray host files. Any leftover is
# printed and the script exits 1.
#
# Idempotent: with nothing up it only runs the checks. With --check-only it
# changes nothing and only checks (on a running cluster it lists all of it).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "down.sh needs root"

# stop_group NAME...: TERM all at once, wait for all, KILL what lingers.
stop_group() {
	local n p pids=() names=() i t=$EPOCHREALTIME
	for n in "$@"; do
		p=$(pid_of "$n") && { pids+=("$p"); names+=("$n"); kill -TERM "$p" 2>/dev/null; }
	done
	for ((i = 0; i < 60; i++)); do
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && break; p=; done
		[[ -z ${p:-} ]] && break
		sleep 0.25
	done
	for i in "${!pids[@]}"; do
		if kill -0 "${pids[i]}" 2>/dev/null; then
			note "${names[i]} (${pids[i]}) ignored TERM for 15s: KILL"
			kill -KILL "${pids[i]}" 2>/dev/null
		fi
	done
	((${#pids[@]} == 0)) || note "stopped ${names[*]} in $(_secs "$t" "$EPOCHREALTIME")s"
	for n in "$@"; do rm -f "$RUN/pids/$n.pid"; done
}

# Keep the recorded PIDs for the final check.
recorded=()
for f in "$RUN"/pids/*.pid; do
	[[ -f $f ]] && recorded+=("$(basename "$f" .pid)=$(<"$f")")
done

teardown() {
	phase "delete pods"
	if pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null && kc get --raw /readyz >/dev/null 2>&1; then
		# Nothing may re-create pods now: stop the controllers and the scheduler.
		stop_group kube-controller-manager kube-scheduler
		kc delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1
		# The kubelet stops each sandbox (CNI DEL) and its containers.
		if ! waitfor "the kubelet to stop every container" 60 bash -c \
			"[[ -z \$(ctr --address '$CONTAINERD_SOCK' -n k8s.io tasks ls -q 2>/dev/null) ]]"; then
			note "some containers still run; removing them through containerd"
		fi
	fi

	phase "stop daemons"
	stop_group kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver
	if pid_of containerd >/dev/null; then
		# Containers the kubelet did not stop: kill and delete through containerd.
		for t in $(ctrk tasks ls -q 2>/dev/null); do ctrk tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
		sleep 0.5
		for t in $(ctrk tasks ls -q 2>/dev/null); do ctrk tasks rm -f "$t" >/dev/null 2>&1; done
		for c in $(ctrk containers ls -q 2>/dev/null); do ctrk containers rm "$c" >/dev/null 2>&1; done
	fi
	stop_group etcd
	stop_group containerd

	phase "stop leftover processes"
	# Everything still in the cluster's cgroup (shims, containers) or netns
	# (helpers started with in-netns) was started by this cluster.
	for round in 1 2 3; do
		mapfile -t left < <({ cluster_pids; own_pids; } | sort -un)
		((${#left[@]})) || break
		for p in "${left[@]}"; do
			cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
			note "stopping ${cmd:0:120}($p)"
			if ((round == 1)); then kill -TERM "$p" 2>/dev/null; else kill -KILL "$p" 2>/dev/null; fi
		done
		sleep 1
	done

	phase "unmount, cgroups, netns"
	# Mounts under the state dir (overlay rootfs, pod netns, volumes), deepest first.
	unmount_all() {
		local m
		awk -v s="$STATE/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || note "cannot unmount $m"
		done
	}
	unmount_all
	unmount_all
	# cgroups, deepest first (empty by now).
	while read -r c; do
		find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
	done < <(cgroup_dirs)
	if netns_exists; then
		ip netns del "$NETNS" || note "cannot delete netns $NETNS"
	fi
	# iproute2 turns /run/netns into a mount point the first time; undo it if we
	# created it and it is empty.
	if [[ -f $HOST/created_run_netns && -d /run/netns && -z $(ls -A /run/netns) ]]; then
		umount /run/netns 2>/dev/null
		rmdir /run/netns 2>/dev/null && rm -f "$HOST/created_run_netns"
	fi

	phase "restore host settings and files"
	if [[ -f $HOST/sysctl.orig ]]; then
		while IFS='=' read -r k v; do
			[[ $(sysctl -n "$k" 2>/dev/null) == "$v" ]] && continue
			sysctl -qw "$k=$v" && note "restored $k=$v"
		done <"$HOST/sysctl.orig"
	fi
	# kubelet's symlinks to our pod logs.
	if [[ -d /var/log/containers ]]; then
		find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete
		[[ -f $HOST/created_var_log_containers ]] && rmdir /var/log/containers 2>/dev/null
	fi
	[[ -d /var/log/containers ]] || rm -f "$HOST/created_var_log_containers"
	# The CNI library's result cache for our network.
	if [[ -d /var/lib/cni ]]; then
		find /var/lib/cni -type f -name "$CNI_NETWORK-*" -delete
		[[ -f $HOST/created_var_lib_cni ]] && find /var/lib/cni -depth -type d -empty -delete 2>/dev/null
	fi
	[[ -d /var/lib/cni ]] || rm -f "$HOST/created_var_lib_cni"
	# Shim sockets dir containerd 1.6 always puts under /run/containerd.
	if [[ -f $HOST/created_run_containerd && -d /run/containerd ]]; then
		find /run/containerd -depth -type d -empty -delete 2>/dev/null
	fi
	[[ -d /run/containerd ]] || rm -f "$HOST/created_run_containerd"

	phase "wipe run-time state"
	if [[ -z $(awk -v s="$STATE/" 'index($5, s) == 1' /proc/self/mountinfo) ]]; then
		rm -rf --one-file-system "$RUN" "$VAR"
	else
		note "mounts remain under $STATE: not wiping $RUN and $VAR"
	fi
}

# check fills bad with everything of the cluster still there.
check() {
	phase "check nothing is left"
	mapfile -t mine < <(own_pids)
	local seen=" "
	for r in "${recorded[@]}"; do
		n=${r%%=*} p=${r#*=}
		if kill -0 "$p" 2>/dev/null && [[ " ${mine[*]} " == *" $p "* ]]; then
			bad+=("recorded process $n ($p) still runs")
			seen+="$p "
		fi
	done
	for p in "${mine[@]}"; do
		[[ $seen == *" $p "* ]] && continue
		bad+=("process $p of the cluster still runs: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-100)")
	done
	# By name: a cluster daemon's name on a process that is not the cluster's is
	# someone else's (envtest runs etcd and kube-apiserver): count, leave alone.
	local daemon_names=" ${DAEMONS[*]} containerd-shim-runc-v2 runc pause hello "
	others=0
	for d in /proc/[0-9]*; do
		argv0=
		{ IFS= read -r -d '' argv0 <"$d/cmdline"; } 2>/dev/null
		name=${argv0##*/}
		[[ -n $name && $daemon_names == *" $name "* && " ${mine[*]} " != *" ${d#/proc/} "* ]] && others=$((others + 1))
	done
	((others == 0)) || note "$others process(es) named like a cluster daemon belong to others (envtest?): left alone"
	for p in $(cluster_pids); do bad+=("pid $p still in the cluster cgroup"); done
	while read -r m; do bad+=("mount $m"); done < <(awk -v s="$STATE/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo)
	while read -r m; do bad+=("mount $m"); done < <(awk -v n="/run/netns/$NETNS" '$5 == n { print $5 }' /proc/self/mountinfo)
	netns_exists && bad+=("network namespace /run/netns/$NETNS")
	while read -r c; do bad+=("cgroup $c"); done < <(cgroup_dirs)
	if [[ -f $HOST/sysctl.orig ]]; then
		while IFS='=' read -r k v; do
			cur=$(sysctl -n "$k" 2>/dev/null)
			[[ $cur == "$v" ]] || bad+=("sysctl $k is $cur, was $v")
		done <"$HOST/sysctl.orig"
	fi
	for l in "$NODE_LINK" "${NODE_LINK}p" cni0; do
		ip link show "$l" >/dev/null 2>&1 && bad+=("link $l in the host network namespace")
	done
	[[ -d /var/log/containers ]] && [[ -n $(find /var/log/containers -maxdepth 1 -lname "$STATE/*") ]] &&
		bad+=("symlinks into $STATE in /var/log/containers")
	[[ -d /var/lib/cni ]] && [[ -n $(find /var/lib/cni -name "$CNI_NETWORK-*") ]] && bad+=("CNI cache files in /var/lib/cni")
	for f in "$HOST"/created_*; do
		[[ -f $f ]] || continue
		p=${f#"$HOST"/created}
		p=${p//_//}
		# Still there and empty: ours to remove. With content (our own entries
		# are checked above), someone else uses it now: leave it.
		[[ -d $p && -z $(ls -A "$p" 2>/dev/null) ]] && bad+=("$p was created by the cluster and is still there")
	done
	[[ -d $RUN || -d $VAR ]] && bad+=("run-time state $RUN or $VAR not wiped")
}

case ${1:-} in
--check-only) ;;
"") teardown ;;
*) die "usage: $0 [--check-only]" ;;
esac
bad=()
check
if ((${#bad[@]})); then
	echo "cluster: DOWN INCOMPLETE, left behind:" >&2
	printf '  - %s\n' "${bad[@]}" >&2
	print_timings "cluster down (FAILED)" >&2
	exit 1
fi
rm -f "$HOST/sysctl.orig" "$HOST/netns.inode" "$HOST"/created_*
rmdir "$HOST" 2>/dev/null
mkdir -p "$LOGS"
print_timings "cluster down" "$LOGS/timings-down.txt"
note "down: no process, mount, cgroup, netns, sysctl change or host file left"
