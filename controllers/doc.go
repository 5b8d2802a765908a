// Package controllers wires the Switchboard controllers into a
// controller-runtime manager: the scheme, the cache restrictions (only the
// operator's own Secrets and Pods are cached), the field indexes and the
// SFUPool and CallsApp reconcilers. `switchboard manager` and the envtest
// suites both start controllers through it, so tests run what ships.
//
// It imports the controller packages below it; nothing imports it but
// cmd/switchboard and tests.
package controllers
