// Package e2e holds end-to-end tests that run Switchboard as a user does:
// the built binary as a separate process, driven from outside.
//
// The browser test builds `switchboard`, starts `switchboard dev` on a free
// loopback port with the CallsApp samples of config/samples, opens the demo
// page in Debian's headless chromium with fake camera and microphone, and
// reads the outcome through getStats(): the pulled video must decode frames
// and a DataChannel message must echo from the first session to the second.
//
// Chromium is required: without it the test fails and says to run `make
// chromium`, unless SWITCHBOARD_SKIP_BROWSER=1 is set explicitly.
//
// Subdirectories: browser launches chromium with the test flags;
// capture-offers regenerates the Chrome SDP fixtures in sfu/testdata.
//
// The fleet tests run several `switchboard sfu` processes: fleet_test.go
// from a hand-written configuration with static peers (no control plane),
// fleet_envtest_test.go from the pod template and configuration the
// operator (`switchboard manager`) rendered on an envtest API server, the
// test standing in for the StatefulSet controller, the kubelet and DNS.
//
// The product is driven only through its command line, HTTP, the
// Kubernetes API and the browser; Switchboard packages are imported for
// their API types, names and wire formats (api/v1alpha1, sfu/config,
// controllers/render names, hub paths),
// never to call into a running component.
package e2e
