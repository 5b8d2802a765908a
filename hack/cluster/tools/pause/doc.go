// Command pause is the pod sandbox process of the local cluster: it holds the
// pod's namespaces open, reaps orphaned children (it may be PID 1 of a shared
// PID namespace) and exits on SIGINT or SIGTERM.
//
// It must import only the standard library.
package main
