package session

// ServerEventsChannel is the reserved DataChannel name of
// datachannels/establish (CONTRACT §2.7).
const ServerEventsChannel = "server-events"

// DataChannelObject is one item of a datachannels request (CONTRACT §2.8).
// Pointers tell "absent" from zero: ordered defaults to true, and canReply
// absent on datachannels/update leaves the grant unchanged.
type DataChannelObject struct {
	Location          string  `json:"location,omitempty"`
	DataChannelName   string  `json:"dataChannelName,omitempty"`
	SessionID         string  `json:"sessionId,omitempty"`
	Ordered           *bool   `json:"ordered,omitempty"`
	MaxRetransmits    *int64  `json:"maxRetransmits,omitempty"`
	MaxPacketLifeTime *int64  `json:"maxPacketLifeTime,omitempty"`
	WaitForAck        bool    `json:"waitForAck,omitempty"`
	CanReply          *bool   `json:"canReply,omitempty"`
	ID                *uint16 `json:"id,omitempty"`
}

// DataChannelsRequest is the body of datachannels/new, /update and /close.
type DataChannelsRequest struct {
	DataChannels []DataChannelObject `json:"dataChannels"`
}

// DataChannelResult is one item of a datachannels response. ID is absent
// on a failed allocation.
type DataChannelResult struct {
	Location         string  `json:"location,omitempty"`
	SessionID        string  `json:"sessionId,omitempty"`
	DataChannelName  string  `json:"dataChannelName,omitempty"`
	ID               *uint16 `json:"id,omitempty"`
	CanReply         *bool   `json:"canReply,omitempty"`
	ErrorCode        string  `json:"errorCode,omitempty"`
	ErrorDescription string  `json:"errorDescription,omitempty"`
}

// DataChannelsResponse is the answer of datachannels/new, /update and /close.
type DataChannelsResponse struct {
	DataChannels []DataChannelResult `json:"dataChannels"`
}

// EstablishRequest is the body of datachannels/establish.
type EstablishRequest struct {
	DataChannel        *DataChannelObject  `json:"dataChannel"`
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
}

// EstablishResponse is the answer of datachannels/establish.
type EstablishResponse struct {
	RequiresImmediateRenegotiation bool                `json:"requiresImmediateRenegotiation"`
	SessionDescription             *SessionDescription `json:"sessionDescription,omitempty"`
	DataChannel                    DataChannelResult   `json:"dataChannel"`
}

func dcItemErr(r DataChannelResult, code, desc string) DataChannelResult {
	r.ErrorCode, r.ErrorDescription = code, desc
	r.ID, r.CanReply = nil, nil
	return r
}

func u16(v uint16) *uint16 { return &v }

func boolPtr(v bool) *bool { return &v }
