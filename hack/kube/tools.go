//go:build tools

// Package kube is a tool module that pins k8s.io/kubernetes and all its
// staging modules so hack/envtest/build.sh (and the local cluster scripts)
// can build the Kubernetes commands from source. The blank imports below keep
// the command packages in go.mod and go.sum when `go mod tidy` runs.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
