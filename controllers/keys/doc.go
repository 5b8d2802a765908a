// Package keys generates the operator's long-lived random tokens (the hub
// token and admin API key of the manager, each pool's fleet token) and keeps
// them in Secrets, so they stay the same across reconciles and manager
// restarts.
//
// It imports Kubernetes API types and the controller-runtime client; it
// must not import the controllers or the media core.
package keys
