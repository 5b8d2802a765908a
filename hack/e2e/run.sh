#!/usr/bin/env bash
# make test-e2e: Switchboard end to end on a real single-node cluster
# (hack/cluster), the way a platform team meets it.
#
#   build the image, the Pion test clients (test/cluster, build tag
#   "cluster") and helm → cluster up with CoreDNS → import the image → helm
#   install the chart → apply an SFUPool (3 SFU pods, TURN on, Direct
#   exposure) and a CallsApp and wait for Ready → run the clients in the
#   cluster's network namespace: read the app's Secret, publish and pull
#   through the pool's API Service across pods, media decoded, usage in
#   `kubectl get callsapps`, scale 3 → 2 during the call and the call survives
#   the drain → delete the app and the pool, children gone → helm uninstall →
#   cluster down → nothing left running or mounted.
#
# Every phase is timed; a table closes the run. On any failure it prints the
# cluster's state and the pods' logs, tears the cluster down all the same,
# checks for leftovers and exits non-zero. The whole output is also written
# to bin/e2e/last-run.log.
#
# Settings (environment): E2E_REPLICAS (3), E2E_DRAIN_TIMEOUT (120s),
# E2E_KEEP=1 leaves the cluster up after a failure for inspection (the next
# run or `make cluster-down` removes it), E2E_TEST_FLAGS (extra flags for the
# test binary, e.g. -test.run).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/cluster/lib.sh
. "$here/../cluster/lib.sh"
cd "$REPO_ROOT"

[[ $(id -u) == 0 ]] || die "test-e2e needs root (the local cluster does)"

GO=${GO:-go}
HELM=${HELM:-$REPO_ROOT/bin/helm}
IMAGE=${IMAGE:-switchboard:dev}
REPLICAS=${E2E_REPLICAS:-3}
DRAIN_TIMEOUT=${E2E_DRAIN_TIMEOUT:-120s}
KEEP=${E2E_KEEP:-0}
OUT=$REPO_ROOT/bin/e2e
TEST_BIN=$OUT/cluster.test
GO_TIMINGS=$OUT/test-timings.tsv
OP_NS=switchboard-system
NS=calls-e2e
POOL=e2e
APP=e2e-app
export CLUSTER_DNS=1

mkdir -p "$OUT"
# The log tee ignores Ctrl-C (the terminal sends it to the whole process
# group) so the cleanup after an interrupt is still printed and logged; if
# it dies all the same, writes fail instead of killing the script, so the
# EXIT trap still tears the cluster down.
exec > >(trap '' INT TERM HUP; exec tee "$OUT/last-run.log") 2>&1
trap '' PIPE

# Phase timing (own helpers: lib.sh's print "cluster:" and up.sh/down.sh
# print their own phases inside ours).
t0=$EPOCHREALTIME
cur=
cur_t=
rows=()
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
begin() {
	end_phase
	cur=$1
	cur_t=$EPOCHREALTIME
	echo "e2e: ---- $cur"
}
end_phase() {
	[[ -n $cur ]] || return 0
	local s
	s=$(secs "$cur_t" "$EPOCHREALTIME")
	rows+=("$(printf '%-58s %7s s' "$cur" "$s")")
	echo "e2e: ---- $cur: ${s}s"
	cur=
}
summary() {
	local status=$1
	end_phase
	echo
	echo "e2e: phase times ($status)"
	printf '   %s\n' "${rows[@]}"
	printf '   %-58s %7s s\n' "total" "$(secs "$t0" "$EPOCHREALTIME")"
}
# add_test_rows puts the phases the test binary timed inside "clients" into
# the table, indented.
add_test_rows() {
	[[ -s $GO_TIMINGS ]] || return 0
	local name s
	while IFS=$'\t' read -r name s; do
		rows+=("$(printf '  %-56s %7s s' "$name" "$s")")
	done <"$GO_TIMINGS"
}

k() { kc "$@"; }

# diagnose prints what a failed run needs for a post-mortem.
diagnose() {
	netns_exists && pid_of kube-apiserver >/dev/null || return 0
	echo "e2e: ==== cluster state at the failure"
	k get nodes -o wide || true
	k get sfupools,callsapps -A -o wide || true
	k get all,pdb,secrets,endpointslices -n "$NS" -o wide || true
	k get all -n "$OP_NS" -o wide || true
	k get sfupool -n "$NS" "$POOL" -o yaml || true
	k get callsapp -n "$NS" "$APP" -o yaml || true
	k describe pods -n "$NS" || true
	k describe pods -n "$OP_NS" || true
	k get events -A --sort-by=.lastTimestamp || true
	local ns p
	for ns in "$OP_NS" "$NS"; do
		for p in $(k get pods -n "$ns" -o name 2>/dev/null); do
			echo "e2e: ==== logs of $ns/$p"
			k logs -n "$ns" "$p" --all-containers --tail=200 || true
		done
	done
}

finished=0
on_exit() {
	local rc=$?
	((finished)) && exit "$rc"
	set +e
	end_phase
	local last=start
	((${#rows[@]} == 0)) || last=${rows[-1]}
	echo "e2e: FAILED (exit $rc) in phase '$last'"
	diagnose
	if ((KEEP)); then
		echo "e2e: E2E_KEEP=1: the cluster stays up; make cluster-down removes it"
	else
		begin "cluster down (after failure)"
		"$CLUSTER_DIR/down.sh"
		end_phase
	fi
	summary FAILED
	exit $((rc == 0 ? 1 : rc))
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# gone KUBECTL_GET_ARGS... succeeds when kubectl get lists nothing (and fails
# when kubectl itself fails, so an unknown kind is never "gone").
gone() {
	local out
	out=$(kc get "$@" -o name) || return 1
	[[ -z $out ]]
}

# ---------------------------------------------------------------- builds
begin "build: image (make image)"
make --no-print-directory image IMAGE="$IMAGE"
begin "build: test clients (test/cluster)"
"$GO" test -c -tags cluster -o "$TEST_BIN" ./test/cluster
begin "build: helm"
make --no-print-directory helm

# ---------------------------------------------------------------- cluster
begin "cluster up (with CoreDNS)"
if netns_exists; then
	echo "e2e: a cluster of this worktree is up: taking it down for a clean run"
	"$CLUSTER_DIR/down.sh"
fi
"$CLUSTER_DIR/up.sh"

begin "image import"
"$CLUSTER_DIR/load-image" "$REPO_ROOT/bin/switchboard-image.tar"
ctrk images ls -q | grep -qx -e "$IMAGE" -e "docker.io/library/$IMAGE" ||
	die "image $IMAGE not in the cluster's containerd after the import"

begin "helm install"
# helm talks to the API server, which listens only inside the netns.
"${NSENTER[@]}" "$HELM" install switchboard charts/switchboard --kubeconfig "$STATE/kubeconfig" \
	--namespace "$OP_NS" --create-namespace \
	--set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
	--wait --timeout 5m
k -n "$OP_NS" rollout status deployment/switchboard --timeout=60s

# ---------------------------------------------------------------- pool and app
begin "apply SFUPool ($REPLICAS SFU pods, TURN) and CallsApp"
sed -e "s|@REPLICAS@|$REPLICAS|" -e "s|@IMAGE@|$IMAGE|" -e "s|@DRAIN_TIMEOUT@|$DRAIN_TIMEOUT|" \
	"$here/pool.yaml" | k apply -f -
begin "pool and app Ready"
k -n "$NS" wait --for=condition=Ready "sfupool/$POOL" --timeout=300s
k -n "$NS" wait --for=condition=Ready "callsapp/$APP" --timeout=120s
k -n "$NS" rollout status "statefulset/$POOL-sfu" --timeout=120s
k -n "$NS" rollout status "deployment/$POOL-turn" --timeout=120s
k get sfupools,callsapps -A -o wide
k -n "$NS" get pods -o wide

# ---------------------------------------------------------------- clients
begin "clients in the netns (test/cluster)"
rm -f "$GO_TIMINGS"
# shellcheck disable=SC2086 # E2E_TEST_FLAGS is a list of flags
E2E_NAMESPACE=$NS E2E_POOL=$POOL E2E_APP=$APP E2E_REPLICAS=$REPLICAS E2E_DRAIN_TIMEOUT=$DRAIN_TIMEOUT \
	E2E_TIMINGS=$GO_TIMINGS "$CLUSTER_DIR/in-netns" "$TEST_BIN" -test.v -test.timeout=20m ${E2E_TEST_FLAGS:-} ||
	test_rc=$?
end_phase
add_test_rows
((${test_rc:-0} == 0)) || exit "$test_rc"

# ---------------------------------------------------------------- teardown
begin "delete app and pool, children gone"
k -n "$NS" delete callsapp "$APP" --wait=true --timeout=60s
waitfor "the app's credentials Secret to go" 60 gone -n "$NS" secret --field-selector "metadata.name=$APP-credentials"
k -n "$NS" delete sfupool "$POOL" --wait=true --timeout=120s
waitfor "every child of the pool to go" 180 gone -n "$NS" statefulsets,deployments,services,pods,poddisruptionbudgets,secrets,configmaps,serviceaccounts,networkpolicies,horizontalpodautoscalers -l "calls.switchboard.dev/pool=$POOL"
waitfor "every pod in $NS to go" 180 gone -n "$NS" pods
k -n "$NS" get all,secrets,pdb,serviceaccounts
k delete namespace "$NS" --wait=true --timeout=120s

begin "helm uninstall, CRDs deleted"
"${NSENTER[@]}" "$HELM" uninstall switchboard --kubeconfig "$STATE/kubeconfig" --namespace "$OP_NS" --wait --timeout 2m
waitfor "the operator's pods to go" 120 gone -n "$OP_NS" pods
waitfor "the release's objects to go" 60 gone -n "$OP_NS" deployments,services,secrets,serviceaccounts,roles,rolebindings,networkpolicies -l app.kubernetes.io/instance=switchboard
waitfor "the release's cluster RBAC to go" 60 gone clusterroles,clusterrolebindings -l app.kubernetes.io/instance=switchboard
k delete namespace "$OP_NS" --wait=true --timeout=120s
# helm keeps CRDs; docs/install.md deletes them by hand.
k delete -f charts/switchboard/crds/ --wait=true --timeout=60s
waitfor "the SFUPool CRD to go" 60 gone crds --field-selector metadata.name=sfupools.calls.switchboard.dev
waitfor "the CallsApp CRD to go" 60 gone crds --field-selector metadata.name=callsapps.calls.switchboard.dev

# ---------------------------------------------------------------- down
begin "cluster down"
"$CLUSTER_DIR/down.sh"
begin "leftover check (down.sh --check-only)"
"$CLUSTER_DIR/down.sh" --check-only

finished=1
summary PASSED
echo "e2e: PASSED"
