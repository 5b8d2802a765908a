package session

import "github.com/switchboard-rtc/switchboard/sfu/forward"

// Publication returns the fan-out track of a live publication on this
// node, for the fleet relay to serve to other pods.
func (m *Manager) Publication(app AppID, sid SessionID, name TrackName) (*forward.Track, error) {
	owner, err := m.Get(app, sid)
	if err != nil {
		return nil, err
	}
	owner.mu.Lock()
	defer owner.mu.Unlock()
	p := owner.pubs[name]
	if p == nil || p.closed {
		return nil, ErrSessionGone
	}
	return p.track, nil
}

// remotePub asks the fleet for a publication of a session that is not on
// this node. The publication it returns belongs to no local session: its
// track is the relay's fan-out track, closed by the relay.
func (m *Manager) remotePub(app AppID, sid SessionID, name TrackName, local error) (*publication, error) {
	if m.cfg.RemoteTrack == nil {
		return nil, local
	}
	t, err := m.cfg.RemoteTrack(app, sid, name)
	if err != nil {
		return nil, err
	}
	return &publication{name: name, kind: t.Kind(), track: t}, nil
}
