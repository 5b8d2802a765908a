// Command hello is the smoke-test workload of the local cluster.
//
// Without arguments it serves HTTP on $PORT (default 8080): /healthz answers
// "ok", every other path "hello from POD_NAME", so a caller can tell which
// pod served it.
//
// "hello probe URL..." runs once inside a pod: it posts a SelfSubjectReview
// to the API server through the kubernetes Service with the pod's
// service-account token and prints the user the server saw, then GETs each
// URL (a Service's ClusterIP, say) and prints the answer. It exits 1 on the
// first failure.
//
// It must import only the standard library.
package main
