#!/usr/bin/env bash
# Generate the cluster's PKI with openssl into $STATE/pki: a CA, serving
# certificates for kube-apiserver and the kubelet, client certificates for
# every component and the admin, the service-account signing key, and one
# kubeconfig per client. ECDSA P-256 keys (fast to make). Idempotent: kept
# when complete and still valid for the node's addresses; regenerated
# otherwise.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

clients=(admin controller-manager scheduler kube-proxy kubelet apiserver-kubelet-client)
want=(ca.crt ca.key apiserver.crt kubelet-serving.crt sa.key sa.pub)
for c in "${clients[@]}"; do want+=("$c.crt" "$c.key" "$c.kubeconfig"); done
complete() {
	local f
	for f in "${want[@]}"; do [[ -s $PKI/$f ]] || return 1; done
	# Still valid for a day and naming the current node address.
	openssl x509 -in "$PKI/apiserver.crt" -noout -checkend 86400 >/dev/null &&
		openssl x509 -in "$PKI/apiserver.crt" -noout -ext subjectAltName | grep -qF "IP Address:$NODE_IP" &&
		grep -qF "$PKI/ca.crt" "$PKI/admin.kubeconfig"
}
if complete; then
	note "certificates up to date in $PKI"
	exit 0
fi

rm -rf "$PKI.new"
mkdir -p "$PKI.new"
cd "$PKI.new"
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

newkey ca.key
openssl req -x509 -new -key ca.key -subj "/CN=switchboard-cluster-ca" -days 3650 -sha256 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt

# sign NAME SUBJECT USAGE [SAN]: a key and a CA-signed certificate.
sign() {
	local n=$1 subj=$2 usage=$3 san=${4:-}
	newkey "$n.key"
	openssl req -new -key "$n.key" -subj "$subj" -out "$n.csr"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$usage"
		[[ -z $san ]] || echo "subjectAltName=$san"
	} >"$n.ext"
	openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
		-extfile "$n.ext" -out "$n.crt" 2>/dev/null
	rm -f "$n.csr" "$n.ext"
}

sign apiserver "/CN=kube-apiserver" serverAuth \
	"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP"
sign kubelet-serving "/CN=$NODE" serverAuth "DNS:$NODE,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
sign admin "/O=system:masters/CN=switchboard-admin" clientAuth
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
sign controller-manager "/CN=system:kube-controller-manager" clientAuth
sign scheduler "/CN=system:kube-scheduler" clientAuth
sign kube-proxy "/CN=system:kube-proxy" clientAuth
sign kubelet "/O=system:nodes/CN=system:node:$NODE" clientAuth
newkey sa.key
openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null

# Kubeconfigs point at the API server on the netns' loopback: they work for
# any process inside the cluster's network namespace.
for c in "${clients[@]}"; do
	cat >"$c.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: switchboard
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: $PKI/ca.crt
users:
- name: $c
  user:
    client-certificate: $PKI/$c.crt
    client-key: $PKI/$c.key
contexts:
- name: switchboard
  context: {cluster: switchboard, user: $c}
current-context: switchboard
KC
done
rm -f ca.srl
cd /
rm -rf "$PKI"
mv "$PKI.new" "$PKI"
note "certificates written to $PKI"
