// Package callsapp reconciles CallsApp objects: it generates the app's
// credentials (app ID, app secret, TURN key) once into a Secret the app owns,
// never regenerating them, names that Secret and the app ID in status, and
// tells through the Ready condition whether the app's pool serves it
// (reasons PoolNotFound, ConfigPending, PoolNotReady, Serving).
//
// The pool controller, not this one, puts the app into the pool's pod
// configuration. Files follow cluster-api: callsapp_controller.go,
// callsapp_phases.go, callsapp_status.go. It imports the API types,
// controllers/render and controllers/index; never controllers/sfupool or the
// media core. App secrets are never logged.
package callsapp
