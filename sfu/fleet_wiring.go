package sfu

import (
	"context"
	"net/http"
	"time"

	"github.com/switchboard-rtc/switchboard/sfu/clock"
	"github.com/switchboard-rtc/switchboard/sfu/fleet"
	"github.com/switchboard-rtc/switchboard/sfu/forward"
	"github.com/switchboard-rtc/switchboard/sfu/relay"
	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// relayOpenTimeout bounds opening a relay inside a pull.
// relayOpenTimeout bounds opening a relay, retries of the dial included:
// long enough to outlast a peer name's negative DNS caching right after
// the peer started (relay.Client retries the dial), short enough for a
// pull of a dead pod's track to fail in seconds.
const relayOpenTimeout = 8 * time.Second

// fleetSessionID names this pod in new session IDs when it is in a fleet.
func (s *Server) fleetSessionID() session.SessionID {
	if m := s.members.Load(); m != nil {
		return session.SessionID(fleet.NewSessionID(m.Self()))
	}
	return session.SessionID(session.RandomHex(16))
}

// startRelay builds both sides of the track relay (idle without a fleet).
func (s *Server) startRelay(o Options) {
	clk := o.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	s.relaySource = relay.NewServer(func(app, sid, name string) (*forward.Track, error) {
		return s.sessions.Publication(session.AppID(app), session.SessionID(sid), session.TrackName(name))
	}, s.log)
	sweep := time.Second
	if o.SweepEvery < 0 {
		sweep = -1
	}
	s.relayDest = relay.NewClient(relay.ClientOptions{
		Token: func() string {
			if m := s.members.Load(); m != nil {
				return m.Token()
			}
			return ""
		},
		TokenHeader: fleet.TokenHeader, Prefix: fleet.RelayPrefix, Now: clk.Now, SweepEvery: sweep, Logger: s.log,
		TrackTimeout: func(app string) time.Duration {
			lim, _ := s.apps.Limits(session.AppID(app))
			return lim.TrackTimeout
		},
	})
}

// remoteTrack is the session manager's hook for pulls of sessions on
// other pods: it returns the local fan-out track of a relay stream.
func (s *Server) remoteTrack(app session.AppID, sid session.SessionID, name session.TrackName) (*forward.Track, error) {
	m := s.members.Load()
	if m == nil {
		return nil, session.ErrSessionGone
	}
	addr, ok := m.RemoteOwner(string(sid))
	if !ok {
		return nil, session.ErrSessionGone
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayOpenTimeout)
	defer cancel()
	t, err := s.relayDest.Track(ctx, addr, string(app), string(sid), string(name))
	if err != nil {
		s.log.Warn("relay open failed", "session", string(sid), "track", string(name), "err", err)
		return nil, session.ErrSessionGone
	}
	return t, nil
}

// remoteDataChannel is the session manager's hook for DataChannel
// subscriptions to sessions on other pods: it returns the local end of the
// pod's relay stream for that channel, opening it if needed.
func (s *Server) remoteDataChannel(app session.AppID, sid session.SessionID, name string) (*session.RemoteDataChannel, error) {
	m := s.members.Load()
	if m == nil {
		return nil, session.ErrSessionGone
	}
	addr, ok := m.RemoteOwner(string(sid))
	if !ok {
		return nil, session.ErrSessionGone
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayOpenTimeout)
	defer cancel()
	ch, err := s.relayDest.Channel(ctx, addr, string(app), string(sid), name)
	if err != nil {
		s.log.Warn("datachannel relay open failed", "session", string(sid), "datachannel", name, "err", err)
		return nil, session.ErrSessionGone
	}
	return &session.RemoteDataChannel{
		Options: session.DataChannelOptions(ch.Options()),
		Subscribe: func(deliver func(isString bool, data []byte), lost func()) session.RemoteSubscription {
			sub := ch.Subscribe(deliver, lost)
			return session.RemoteSubscription{Cancel: sub.Cancel, Grant: sub.Grant, Reply: sub.Reply}
		},
		Done: ch.Done(),
	}, nil
}

// publishedChannel serves the relay's lookup of a DataChannel published on
// this pod.
func (s *Server) publishedChannel(app, sid, name string) (relay.ChannelOptions, relay.TapFunc, error) {
	o, err := s.sessions.PublishedDataChannel(session.AppID(app), session.SessionID(sid), name)
	if err != nil {
		return relay.ChannelOptions{}, nil, err
	}
	return relay.ChannelOptions(o), func(deliver func(isString bool, data []byte), lost func()) (*relay.Tap, error) {
		t, err := s.sessions.TapDataChannel(session.AppID(app), session.SessionID(sid), name, deliver, lost)
		if err != nil {
			return nil, err
		}
		return (*relay.Tap)(t), nil
	}, nil
}

func (s *Server) newRouter() *fleet.Router {
	relayMux := http.NewServeMux()
	relayMux.Handle("GET "+fleet.RelayPrefix+"{appId}/{sessionId}/{trackName}", s.relaySource)
	relayMux.Handle("GET "+fleet.RelayPrefix+"{appId}/{sessionId}/datachannels/{name}", s.relaySource.ChannelHandler(s.publishedChannel))
	return fleet.NewRouter(s.members.Load, s.handler, relayMux, s.log)
}

// RelayStreams returns how many track relay streams this pod sends to
// other pods and receives from them.
func (s *Server) RelayStreams() (sending, receiving int) {
	return s.relaySource.Streams(), s.relayDest.Relays()
}

// ChannelRelayStreams returns how many DataChannel relay streams this pod
// sends to other pods and receives from them.
func (s *Server) ChannelRelayStreams() (sending, receiving int) {
	return s.relaySource.ChannelStreams(), s.relayDest.Channels()
}
