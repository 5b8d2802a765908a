#!/usr/bin/env bash
# Build kube-apiserver and etcd for controller-runtime's envtest from source
# into DEST (the Makefile passes bin/k8s), because prebuilt binaries cannot be
# downloaded here.
#
#   kube-apiserver: k8s.io/kubernetes/cmd/kube-apiserver from the tool module
#                   hack/kube (k8s.io/kubernetes plus replace directives that
#                   pin every staging module to its tagged version).
#   etcd:           hack/envtest/etcd, a main calling etcdmain.Main.
#
# Further Kubernetes commands from the same pinned module can be named after
# DEST (kubectl, kube-controller-manager, kube-scheduler, kubelet, kube-proxy).
#
# Cached: a binary is rebuilt only when it is missing or when its line in
# DEST/VERSIONS no longer matches the pinned version, the go.mod/go.sum hash
# and the link flags. Each binary is built to a temporary name in DEST and
# renamed into place, so an interrupted build never leaves a partial binary.
# Works from a fresh clone with an empty module cache (modules come from
# GOPROXY); the first kube-apiserver build takes several minutes on 2 cores.
#
# Usage: hack/envtest/build.sh DEST [KUBE_CMD...]
set -euo pipefail

dest=${1:?usage: $0 DEST [KUBE_CMD...]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kube_mod=$(cd "$here/../kube" && pwd)
etcd_mod=$here/etcd
GO=${GO:-go}

die() { echo "envtest: $*" >&2; exit 1; }

# required_version MODDIR MODULE prints the version MODDIR/go.mod requires.
required_version() {
	local v
	v=$(awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == "require" ? $3 : $2); exit }' "$1/go.mod")
	[[ -n $v ]] || die "$1/go.mod does not require $2"
	echo "$v"
}

# modhash MODDIR hashes go.mod and go.sum, so a changed replace or dependency
# also triggers a rebuild.
modhash() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-16; }
shorthash() { echo "$1" | sha256sum | cut -c1-8; }

kube_version=$(required_version "$kube_mod" k8s.io/kubernetes)
etcd_version=$(required_version "$etcd_mod" go.etcd.io/etcd/server/v3)
kube_minor=${kube_version#v1.}
kube_minor=${kube_minor%%.*}

# Clients (kubectl, discovery) see a real version instead of v0.0.0-master.
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version"
kube_ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor"
kube_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
etcd_ldflags="-s -w"

names=(etcd kube-apiserver)
for c in "$@"; do
	case $c in
	kube-apiserver | etcd) ;;
	kubectl | kube-controller-manager | kube-scheduler | kubelet | kube-proxy) names+=("$c") ;;
	*) die "unknown command $c (want kubectl, kube-controller-manager, kube-scheduler, kubelet or kube-proxy)" ;;
	esac
done

# One stamp line per binary: what it was built from and how.
declare -A stamp
kube_stamp="k8s.io/kubernetes@$kube_version mod=$(modhash "$kube_mod") ldflags=$(shorthash "$kube_ldflags")"
for n in "${names[@]}"; do
	stamp[$n]="$n $kube_stamp"
done
stamp[etcd]="etcd go.etcd.io/etcd/server/v3@$etcd_version mod=$(modhash "$etcd_mod") ldflags=$(shorthash "$etcd_ldflags")"

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
stampfile=$dest/VERSIONS

# Serialise concurrent runs on the same DEST (two make invocations at once).
if command -v flock >/dev/null; then
	exec 9>"$dest/.build.lock"
	flock 9
fi

up_to_date() { # NAME
	[[ -x $dest/$1 ]] && [[ -f $stampfile ]] && grep -qxF "${stamp[$1]}" "$stampfile"
}

tmp=
child=
cleanup() {
	[[ -z $child ]] || kill "$child" 2>/dev/null || true
	[[ -z $tmp ]] || rm -f "$tmp"
	rm -f "$stampfile.tmp.$$"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export CGO_ENABLED=0
build() { # NAME MODDIR PACKAGE LDFLAGS
	local name=$1 dir=$2 pkg=$3 ldflags=$4 start=$SECONDS rc=0
	tmp=$dest/.$name.tmp.$$
	echo "envtest: building $name (${stamp[$name]%% mod=*}) ..."
	# In the background plus wait, so a signal reaches the trap at once.
	(cd "$dir" && exec "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$tmp" "$pkg") &
	child=$!
	wait "$child" || rc=$?
	child=
	[[ $rc -eq 0 ]] || die "building $name failed (exit $rc)"
	mv -f "$tmp" "$dest/$name"
	tmp=
	# Record this binary's stamp line, keeping the others.
	{ grep -v "^$name " "$stampfile" 2>/dev/null || true; echo "${stamp[$name]}"; } >"$stampfile.tmp.$$"
	mv -f "$stampfile.tmp.$$" "$stampfile"
	echo "envtest: built $name in $((SECONDS - start))s ($(du -h "$dest/$name" | cut -f1))"
}

for n in "${names[@]}"; do
	if up_to_date "$n"; then
		echo "envtest: $n up to date (${stamp[$n]%% mod=*})"
	elif [[ $n == etcd ]]; then
		build etcd "$etcd_mod" . "$etcd_ldflags"
	else
		build "$n" "$kube_mod" "k8s.io/kubernetes/cmd/$n" "$kube_ldflags"
	fi
done
echo "envtest: KUBEBUILDER_ASSETS=$dest"
