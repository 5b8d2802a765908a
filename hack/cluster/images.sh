#!/usr/bin/env bash
# Build the cluster's tools and images from hack/cluster/tools:
#   $STATE/tools/imgpack        packs static binaries into image tarballs (generic)
#   $STATE/images/pause.tar     local.test/pause:v1, containerd's sandbox image
#   $STATE/images/hello.tar     local.test/hello:v1, the smoke test's workload
#   $STATE/images/coredns.tar   only with CLUSTER_DNS=1: CoreDNS $COREDNS_VERSION
#                               built with go install from the Go module proxy
# Static binaries (CGO_ENABLED=0), images FROM scratch, no registry.
# Cached: skipped when the sources and the Go version are unchanged.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GO=${GO:-go}

src=$CLUSTER_DIR/tools
stamp=$( (
	cd "$src"
	find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 sha256sum
	"$GO" version
) | sha256sum | cut -c1-16)
# coredns builds CoreDNS and packs its image unless the stamped one exists.
coredns() {
	local want="coredns $COREDNS_VERSION $("$GO" version)"
	if [[ -f $IMAGES/coredns.stamp && $(<"$IMAGES/coredns.stamp") == "$want" && -s $IMAGES/coredns.tar ]]; then
		note "coredns image up to date"
		return 0
	fi
	mkdir -p "$TOOLS_BIN" "$IMAGES"
	rm -f "$IMAGES/coredns.stamp"
	note "building coredns $COREDNS_VERSION (a few minutes the first time)"
	(cd "$src" && CGO_ENABLED=0 GOBIN=$TOOLS_BIN "$GO" install -trimpath -ldflags "-s -w" \
		"github.com/coredns/coredns@$COREDNS_VERSION")
	[[ -x $TOOLS_BIN/imgpack ]] || (cd "$src" && CGO_ENABLED=0 "$GO" build -trimpath -o "$TOOLS_BIN/imgpack" ./imgpack)
	"$TOOLS_BIN/imgpack" -tag "$COREDNS_IMAGE" -out "$IMAGES/coredns.tar" -file "$TOOLS_BIN/coredns:/coredns" -user 65534
	echo "$want" >"$IMAGES/coredns.stamp"
}
[[ $CLUSTER_DNS != 1 ]] || coredns

if [[ -f $IMAGES/STAMP && $(<"$IMAGES/STAMP") == "$stamp" && -x $TOOLS_BIN/imgpack &&
	-s $IMAGES/pause.tar && -s $IMAGES/hello.tar ]]; then
	note "tools and images up to date"
	exit 0
fi
mkdir -p "$TOOLS_BIN" "$IMAGES"
rm -f "$IMAGES/STAMP"
export CGO_ENABLED=0
for cmd in imgpack pause hello; do
	(cd "$src" && "$GO" build -trimpath -buildvcs=false -ldflags "-s -w" -o "$TOOLS_BIN/$cmd" "./$cmd")
done
"$TOOLS_BIN/imgpack" -tag "$PAUSE_IMAGE" -out "$IMAGES/pause.tar" -file "$TOOLS_BIN/pause:/pause"
"$TOOLS_BIN/imgpack" -tag "$HELLO_IMAGE" -out "$IMAGES/hello.tar" -file "$TOOLS_BIN/hello:/hello" -user 65534
echo "$stamp" >"$IMAGES/STAMP"
note "tools and images built"
