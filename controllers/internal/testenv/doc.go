// Package testenv starts a real kube-apiserver and etcd (controller-runtime
// envtest, binaries from KUBEBUILDER_ASSETS, built by `make envtest`) with
// the Switchboard CRDs installed, and managers limited to one namespace so
// tests sharing one API server do not see each other. It also provides a
// client that counts writes. Only tests import it.
package testenv
