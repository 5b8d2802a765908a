package session

import "time"

// IDs are typed so an app ID is never passed where a session ID is expected.
type (
	// AppID is a Calls app ID (32 lowercase hex characters).
	AppID string
	// SessionID identifies a session (32 lowercase hex characters).
	SessionID string
	// TrackName names a publication within its session.
	TrackName string
)

// Locations of a track object.
const (
	LocationLocal  = "local"
	LocationRemote = "remote"
)

// Track statuses reported by GET session.
const (
	StatusActive       = "active"
	StatusInactive     = "inactive"
	StatusInitializing = "initializing"
)

// SessionDescription is an SDP with its type ("offer" or "answer").
type SessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// Simulcast is a subscriber's simulcast preference.
type Simulcast struct {
	PreferredRid     string `json:"preferredRid,omitempty"`
	PriorityOrdering string `json:"priorityOrdering,omitempty"`
	RidNotAvailable  string `json:"ridNotAvailable,omitempty"`
}

// TrackObject is one item of a tracks request.
type TrackObject struct {
	Location                 string     `json:"location,omitempty"`
	Mid                      string     `json:"mid,omitempty"`
	SessionID                string     `json:"sessionId,omitempty"`
	TrackName                string     `json:"trackName,omitempty"`
	BidirectionalMediaStream bool       `json:"bidirectionalMediaStream,omitempty"`
	Kind                     string     `json:"kind,omitempty"`
	Simulcast                *Simulcast `json:"simulcast,omitempty"`
}

// TrackResult is one item of a tracks response. Mid is always present
// (empty for a failed pull), as clients match on it.
type TrackResult struct {
	Location         string `json:"location,omitempty"`
	SessionID        string `json:"sessionId,omitempty"`
	TrackName        string `json:"trackName,omitempty"`
	Mid              string `json:"mid"`
	Kind             string `json:"kind,omitempty"`
	ErrorCode        string `json:"errorCode,omitempty"`
	ErrorDescription string `json:"errorDescription,omitempty"`
}

// TracksRequest is the body of tracks/new.
type TracksRequest struct {
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
	Tracks             []TrackObject       `json:"tracks,omitempty"`
	AutoDiscover       bool                `json:"autoDiscover,omitempty"`
}

// TracksResponse is the answer of tracks/new, tracks/close and tracks/update.
type TracksResponse struct {
	RequiresImmediateRenegotiation bool                `json:"requiresImmediateRenegotiation"`
	SessionDescription             *SessionDescription `json:"sessionDescription,omitempty"`
	Tracks                         []TrackResult       `json:"tracks"`
}

// CloseRequest is the body of tracks/close.
type CloseRequest struct {
	Tracks             []TrackObject       `json:"tracks"`
	Force              bool                `json:"force"`
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
}

// UpdateRequest is the body of tracks/update.
type UpdateRequest struct {
	Tracks             []TrackObject       `json:"tracks"`
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
}

// TrackState is one track of GET session.
type TrackState struct {
	Location  string `json:"location"`
	Mid       string `json:"mid"`
	TrackName string `json:"trackName"`
	SessionID string `json:"sessionId,omitempty"`
	Status    string `json:"status"`
}

// DataChannelState is one DataChannel of GET session.
type DataChannelState struct {
	Location        string `json:"location"`
	SessionID       string `json:"sessionId,omitempty"`
	DataChannelName string `json:"dataChannelName"`
	ID              uint16 `json:"id"`
	Status          string `json:"status"`
}

// State is the body of GET session.
type State struct {
	Tracks       []TrackState       `json:"tracks"`
	DataChannels []DataChannelState `json:"dataChannels"`
}

// Limits are the per-app Calls limits (DESIGN 1.1).
type Limits struct {
	MaxTracksPerCall int
	// ConnectWait is how long an operation that needs a connected
	// transport waits for it before failing with 425.
	ConnectWait time.Duration
	// TrackTimeout collects a publication with no inbound packet for this long.
	TrackTimeout time.Duration
	// ReconnectWindow keeps a session that lost connectivity usable this long.
	ReconnectWindow time.Duration
}
