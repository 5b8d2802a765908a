#!/usr/bin/env bash
# Install the node's runtime from Debian: containerd, runc, the CNI plugins
# (bridge, host-local, portmap, loopback), iptables, conntrack, iproute2,
# nsenter (util-linux), openssl and curl. Idempotent: when every package is
# already installed it does nothing, otherwise it runs apt-get update first.
# Nothing is started: the cluster runs its own containerd (hack/cluster/up.sh).
set -euo pipefail

pkgs=(containerd runc containernetworking-plugins iptables conntrack iproute2 util-linux openssl curl)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	echo "cluster: runtime packages installed"
	exit 0
fi
[[ $(id -u) == 0 ]] || { echo "cluster: installing ${missing[*]} needs root" >&2; exit 1; }
echo "cluster: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian's containerd package may ship a service; there is no init system to
# start it here, and the cluster never uses the system containerd.
for b in containerd runc ctr iptables nsenter openssl /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/portmap /usr/lib/cni/loopback; do
	command -v "$b" >/dev/null || [[ -x $b ]] || { echo "cluster: $b missing after install" >&2; exit 1; }
done
echo "cluster: runtime packages installed"
