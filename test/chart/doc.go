// Package chart tests the Helm chart in charts/switchboard: it runs bin/helm
// (`make helm`) to lint and render the chart with the values files in
// charts/switchboard/ci, decodes the rendered objects into Kubernetes types
// and checks them against the operator's own rendering of pool pods
// (controllers/render), the CRDs and RBAC in config/, and the metrics the
// code exports (the Grafana dashboard).
//
// It holds tests only and must not be imported. It may import api/v1alpha1
// and controllers/render (read-only) and nothing from sfu/ or turn/, whose
// metric names it reads as source text instead.
package chart
