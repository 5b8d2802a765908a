#!/usr/bin/env bash
# Copies the generated CRDs and manager ClusterRole rules from config/ into the
# Helm chart, so the chart installs exactly what kustomize installs.
#   hack/helm-sync.sh          write the copies
#   hack/helm-sync.sh --check  fail (exit 1) when a copy differs from config/
set -euo pipefail
cd "$(dirname "$0")/.."

chart=charts/switchboard
check=false
[[ "${1:-}" == "--check" ]] && check=true

# pairs "source destination"
pairs=()
for f in config/crd/bases/*.yaml; do
	pairs+=("$f $chart/crds/$(basename "$f")")
done
if [[ -f config/rbac/role.yaml ]]; then
	pairs+=("config/rbac/role.yaml $chart/files/manager-role.yaml")
fi

status=0
for p in "${pairs[@]}"; do
	src=${p% *} dst=${p#* }
	if $check; then
		if ! cmp -s "$src" "$dst"; then
			echo "$dst differs from $src: run hack/helm-sync.sh and commit" >&2
			status=1
		fi
	else
		cp "$src" "$dst"
	fi
done
# A CRD removed from config/ must leave the chart too.
for f in "$chart"/crds/*.yaml; do
	[[ -e "$f" ]] || continue
	if [[ ! -f config/crd/bases/$(basename "$f") ]]; then
		if $check; then
			echo "$f has no source in config/crd/bases" >&2
			status=1
		else
			rm "$f"
		fi
	fi
done
exit $status
