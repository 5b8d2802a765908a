package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/switchboard-rtc/switchboard/hub"
	"github.com/switchboard-rtc/switchboard/sfu/config"
	"github.com/switchboard-rtc/switchboard/turn"
)

// fleetRevocations is the credentials API's revocation set in a fleet pod
// (docs/turn.md, "Revocation across the fleet"): a revocation is recorded
// in the process at once, so a TURN server sharing the set refuses the
// username on its next request, and forwarded to the manager's hub, which
// hands it to every TURN pod of the pool. The 204 waits for the hub at
// most a second; after that the forwarder retries in the background until
// the hub accepts or the credential expires.
type fleetRevocations struct {
	*turn.MemoryRevocations
	fwd *hub.RevocationForwarder
	log *slog.Logger
}

// newFleetRevocations returns the set; current is the pod's configuration
// in effect (its hub URL, hub token and pool). The forwarder's retries run
// until ctx ends.
func newFleetRevocations(ctx context.Context, log *slog.Logger, current func() *config.Pod) *fleetRevocations {
	fwd := hub.NewRevocationForwarder(hub.ForwarderOptions{Logger: log, Target: func() (string, string, string) {
		p := current()
		if p == nil {
			return "", "", ""
		}
		return p.Hub, p.HubToken, p.Pool
	}})
	go fwd.Run(ctx)
	return &fleetRevocations{MemoryRevocations: turn.NewMemoryRevocations(nil), fwd: fwd, log: log}
}

// Revoke implements turn.Revocations.
func (r *fleetRevocations) Revoke(username string, expiry time.Time) {
	r.MemoryRevocations.Revoke(username, expiry)
	switch err := r.fwd.Forward(username, expiry); {
	case err == nil:
	case errors.Is(err, hub.ErrNoHub):
		r.log.Warn("no hub configured: the turn revocation applies to this pod only")
	default:
		r.log.Warn("turn revocation not yet accepted by the hub; retrying in the background", "err", err)
	}
}

// followRevocations makes a TURN pod apply its pool's revocations: the
// list persisted beside the configuration file (read now, before the
// server serves, then every few seconds) and the hub's long-poll (after
// Run starts). Entries stay applied until they expire, whatever happens
// to the hub.
func followRevocations(log *slog.Logger, configPath string, pod *config.Pod, rev turn.Revocations) *hub.RevocationFollower {
	f := hub.NewRevocationFollower(hub.FollowerOptions{
		HubURL: pod.Hub, Token: pod.HubToken, Pool: pod.Pool,
		File:   filepath.Join(filepath.Dir(configPath), hub.RevocationsFileName),
		Logger: log,
		OnRevocation: func(r hub.Revocation) {
			rev.Revoke(r.Username, time.Unix(r.Expiry, 0))
		},
	})
	f.LoadFile()
	return f
}
