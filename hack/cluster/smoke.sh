#!/usr/bin/env bash
# Smoke test of the running local cluster (make cluster-up first):
#   1. import the hello image tarball with `ctr -n k8s.io images import`;
#   2. apply a 3-replica Deployment of it (restricted pod security) and a
#      Service (manifests/smoke.yaml);
#   3. wait until the Deployment is Ready;
#   4. from inside the netns, GET every pod IP and expect "hello from POD";
#   5. GET the Service's ClusterIP until kube-proxy routes it, then until
#      every pod has answered through it (at most 200 requests);
#   6. run a probe pod that reaches the API server through the kubernetes
#      Service with its service-account token (expects the server to see
#      system:serviceaccount:smoke:default) and the Service from inside a pod;
#      with cluster DNS (CLUSTER_DNS=1) the pod also GETs the Service by name;
#   7. delete the namespace and wait until its pods are gone.
# Each phase is timed; any failure prints the evidence and exits 1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

netns_exists && kc get --raw /readyz >/dev/null 2>&1 || die "the cluster is not up (make cluster-up)"
[[ -s $IMAGES/hello.tar ]] || "$CLUSTER_DIR/images.sh"
ns=smoke
fail() {
	echo "smoke: FAIL: $*" >&2
	kc -n "$ns" get deploy,pods,svc,endpointslices -o wide >&2 || true
	kc -n "$ns" get events --sort-by=.lastTimestamp >&2 || true
	exit 1
}
ncurl() { "${NSENTER[@]}" curl -sS --max-time 3 "$@"; }

phase "import image (ctr images import)"
ctrk images import "$IMAGES/hello.tar" >/dev/null || fail "import $IMAGES/hello.tar"
ctrk images ls -q | grep -qxF "$HELLO_IMAGE" || fail "$HELLO_IMAGE not in containerd after import"

phase "apply Deployment and Service"
kc delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
kc apply -f "$CLUSTER_DIR/manifests/smoke.yaml" >/dev/null

phase "Deployment Ready (3 replicas)"
kc -n "$ns" rollout status deploy/hello --timeout=180s >/dev/null || fail "deployment hello not ready"
ready=$(kc -n "$ns" get deploy hello -o jsonpath='{.status.readyReplicas}')
[[ $ready == 3 ]] || fail "readyReplicas is $ready, want 3"

phase "every pod answers on its IP"
mapfile -t pods < <(kc -n "$ns" get pods -l app=hello -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}')
((${#pods[@]} == 3)) || fail "want 3 pods, got ${#pods[@]}"
for line in "${pods[@]}"; do
	read -r pod ip <<<"$line"
	got=$(ncurl "http://$ip:8080/") || fail "GET http://$ip:8080/ (pod $pod) failed"
	[[ $got == "hello from $pod" ]] || fail "pod $pod at $ip answered '$got'"
	echo "smoke: $ip -> $got"
done

phase "Service reachable through kube-proxy"
svc=$(kc -n "$ns" get svc hello -o jsonpath='{.spec.clusterIP}')
[[ -n $svc ]] || fail "service hello has no ClusterIP"
waitfor "http://$svc/ to answer" 60 "${NSENTER[@]}" curl -sf --max-time 1 "http://$svc/" || fail "service $svc unreachable"
# Every pod must answer through the Service: kube-proxy may still be adding
# the last endpoints, so send up to 200 requests, stopping once all 3 answered.
declare -A seen=()
tries=0
while ((${#seen[@]} < 3 && tries < 200)); do
	tries=$((tries + 1))
	got=$(ncurl "http://$svc/") || fail "GET http://$svc/ failed on try $tries"
	[[ $got == "hello from hello-"* ]] || fail "service answered '$got'"
	seen[${got#hello from }]=1
done
((${#seen[@]} == 3)) || fail "$tries requests to the Service reached only ${#seen[@]} pods (${!seen[*]})"
echo "smoke: service $svc reached all 3 pods in $tries requests"

phase "probe pod: API server and Service"
urls="\"http://$svc/\""
dns=
if kc -n kube-system get deploy coredns >/dev/null 2>&1; then
	dns=http://hello.$ns.svc.cluster.local/
	urls+=", \"$dns\""
fi
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: $ns}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: probe
    image: $HELLO_IMAGE
    imagePullPolicy: Never
    args: [probe, $urls]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
EOF
if ! kc -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded pod/probe --timeout=90s >/dev/null; then
	kc -n "$ns" logs probe >&2 || true
	fail "probe pod did not succeed"
fi
out=$(kc -n "$ns" logs probe)
echo "$out" | sed 's/^/smoke: /'
grep -qxF "PROBE apiserver user=system:serviceaccount:$ns:default" <<<"$out" ||
	fail "the API server did not see the pod's service account"
grep -q "^PROBE http://$svc/ hello from hello-" <<<"$out" || fail "the Service did not answer the pod"
if [[ -n $dns ]]; then
	grep -q "^PROBE $dns hello from hello-" <<<"$out" || fail "the Service did not answer the pod by its DNS name"
fi

phase "delete namespace"
kc delete namespace "$ns" --wait=true --timeout=120s >/dev/null || fail "namespace $ns not deleted"

print_timings "smoke" "$LOGS/timings-smoke.txt"
echo "smoke: PASS"
