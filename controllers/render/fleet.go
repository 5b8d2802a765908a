package render

import (
	"strconv"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Fleet renders the fleet section of a pool's pod configuration
// (docs/fleet.md): every SFU pod reaches pod n of the StatefulSet at
// <pool>-sfu-<n>.<pool>-sfu-internal.<namespace>.svc on the API port, and
// pods trust each other by token. The token is generated once per pool and
// kept by the caller (the pool's config Secret); an empty token renders no
// fleet, so pods run standalone.
func Fleet(p *v1alpha1.SFUPool, token string) *config.Fleet {
	if token == "" {
		return nil
	}
	return &config.Fleet{
		Token: token,
		PeerTemplate: SFUName(p) + "-{ordinal}." + InternalServiceName(p) + "." + namespace(p) + ".svc:" +
			strconv.Itoa(HTTPPort),
	}
}
