// Command hello is the smoke-test workload of the local cluster: an HTTP
// server on $PORT (default 8080) answering /healthz with "ok" and every other
// path with "hello from POD_NAME", so a caller can tell which pod served it.
//
// It must import only the standard library.
package main
