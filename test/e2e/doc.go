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
// This package imports no Switchboard package except its own helpers: it
// sees the product only through its command line, HTTP and the browser.
package e2e
