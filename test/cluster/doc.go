// Package cluster holds the client side of `make test-e2e` (hack/e2e/run.sh):
// real Pion WebRTC clients that use a Switchboard fleet installed with Helm
// on the local single-node cluster (hack/cluster), from inside the cluster's
// network namespace.
//
// Its tests carry the build tag "cluster" and run only there: run.sh builds
// them with `go test -c -tags cluster` and starts the binary through
// hack/cluster/in-netns, with KUBECONFIG and kubectl on PATH, after it has
// installed the chart and applied the pool and app it names in E2E_POOL,
// E2E_APP and E2E_NAMESPACE. Without the tag the package is empty, so
// `go test ./...` compiles it and runs nothing.
//
// The tests see the product as a user does: through kubectl (Secrets,
// status, scaling) and the Calls HTTP API of the pool's API Service. They
// import no Switchboard package.
package cluster
