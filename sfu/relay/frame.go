package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pion/webrtc/v4"
)

// Upgrade is the HTTP Upgrade token of a relay stream.
const Upgrade = "switchboard-relay"

// Frame types.
const (
	frameHello    byte = 1 // source → destination: JSON hello
	frameRTP      byte = 2 // source → destination: one RTP packet of a layer
	frameLayers   byte = 3 // source → destination: JSON list of rids
	frameEnd      byte = 4 // source → destination: the publication ended
	frameKeyframe byte = 5 // destination → source: keyframe request for a layer
	frameMessage  byte = 6 // a DataChannel message (fragment); destination → source: a reply
	frameGrant    byte = 7 // destination → source: take (layer 1) or give back (0) canReply
	frameLost     byte = 8 // source → destination: the stream lost canReply to another subscriber
)

// allLayers in a keyframe frame asks every layer.
const allLayers = 0xff

const (
	headerLen   = 4
	maxFrameLen = 1 << 14
)

var (
	// ErrNotFound is returned when the source pod has no such publication
	// (or its codec is not known yet).
	ErrNotFound = errors.New("relay: track not found on source pod")
	// ErrClosed is returned by a closed Client.
	ErrClosed = errors.New("relay: closed")
	// errFrame marks a malformed stream.
	errFrame = errors.New("relay: malformed frame")
)

// hello describes the relayed track.
type hello struct {
	Kind  string                    `json:"kind"`
	Codec webrtc.RTPCodecCapability `json:"codec"`
	Rids  []string                  `json:"rids"`
}

// putHeader writes a frame header into b[:4].
func putHeader(b []byte, typ, layer byte, n int) {
	b[0], b[1] = typ, layer
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
}

// readFrame reads one frame into buf (grown as needed) and returns its
// type, layer and payload. The header is read into buf too: a local array
// would escape through io.Reader and cost an allocation per frame.
func readFrame(r io.Reader, buf []byte) (typ, layer byte, payload []byte, err error) {
	if cap(buf) < headerLen {
		buf = make([]byte, 0, 1500)
	}
	h := buf[:headerLen]
	if _, err = io.ReadFull(r, h); err != nil {
		return 0, 0, nil, err
	}
	typ, layer = h[0], h[1]
	n := int(binary.BigEndian.Uint16(h[2:4]))
	if n > maxFrameLen {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes", errFrame, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err = io.ReadFull(r, buf); err != nil {
		return 0, 0, nil, err
	}
	return typ, layer, buf, nil
}
