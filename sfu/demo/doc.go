// Package demo serves the browser demo page of `switchboard dev`: it
// publishes the camera and microphone through the Calls API, pulls them back
// into a second PeerConnection, shows both side by side, and echoes a
// DataChannel message from the first session to the second.
//
// The page is plain HTML and JavaScript embedded in the binary: no build
// step, no external assets. It talks to the API exactly as the Calls browser
// examples do (fetch with a Bearer app secret and a string body), so what it
// proves also holds for unchanged Calls clients.
//
// Like the Calls browser examples, the page receives the app secret: the
// handler hands it out as /demo/config.json, to same-origin requests for a
// loopback host name only. That is acceptable only for a local development
// server bound to loopback; never mount this handler on a server that others
// can reach.
//
// This package owns the page and its config endpoint only. It must not import
// Kubernetes packages, Pion, or any other sfu package: it knows the API only
// from the browser's side.
package demo
