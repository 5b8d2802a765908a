package transport

import (
	"errors"
	"fmt"
	"strings"
)

// Cardinality bounds on endpoint SDP (pion/sdp imposes none).
const (
	MaxMediaSections = 256
	MaxCandidates    = 256
	MaxSDPLines      = 20000
)

// ErrSDPTooComplex is returned for SDP past the cardinality bounds.
var ErrSDPTooComplex = errors.New("sdp too complex")

// CheckSDP rejects SDP with too many m-sections, candidates or lines before
// anything parses it.
func CheckSDP(raw string) error {
	var media, cands, lines int
	for len(raw) > 0 {
		line := raw
		if i := strings.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = ""
		}
		lines++
		switch {
		case strings.HasPrefix(line, "m="):
			media++
		case strings.HasPrefix(line, "a=candidate:"):
			cands++
		}
	}
	switch {
	case media > MaxMediaSections:
		return fmt.Errorf("%w: %d m-sections (max %d)", ErrSDPTooComplex, media, MaxMediaSections)
	case cands > MaxCandidates:
		return fmt.Errorf("%w: %d candidates (max %d)", ErrSDPTooComplex, cands, MaxCandidates)
	case lines > MaxSDPLines:
		return fmt.Errorf("%w: %d lines (max %d)", ErrSDPTooComplex, lines, MaxSDPLines)
	}
	return nil
}
