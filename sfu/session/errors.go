package session

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of CONTRACT §2.13.
const (
	CodeUnauthorized              = "unauthorized"
	CodeNotFound                  = "not_found"
	CodeDecodingError             = "decoding_error"
	CodeInvalidParams             = "invalid_params"
	CodePayloadTooLarge           = "payload_too_large"
	CodeSessionError              = "session_error"
	CodeInvalidSessionDescription = "invalid_session_description"
	CodeNotFoundTrack             = "not_found_track_error"
	CodeEmptyTrack                = "empty_track_error"
	CodeRepeatedLocalTrack        = "repeated_local_track_error"
	CodeUpdateTrack               = "update_track_error"
	CodeCloseTrack                = "close_track_error"
	CodeInternal                  = "internal_error"
	CodeTemporarilyUnavailable    = "temporarily_unavailable_error"
)

// Error is a request-level failure with its HTTP status and Calls code.
type Error struct {
	Status      int
	Code        string
	Description string
	Err         error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

// Sentinel errors; each maps to one Error via AsError.
var (
	ErrSessionGone     = errors.New("session not found or expired")
	ErrNotConnected    = errors.New("session transport not connected in time")
	ErrPendingOffer    = errors.New("an SFU offer is waiting for its answer on /renegotiate")
	ErrNoPendingOffer  = errors.New("no SFU offer is waiting for an answer")
	ErrTooManyTracks   = errors.New("too many tracks in one call")
	ErrSDPTooLarge     = errors.New("session description too large")
	ErrClosed          = errors.New("manager closed")
	ErrDraining        = errors.New("server is draining")
	ErrSessionCap      = errors.New("app session limit reached")
	ErrQuotaExceeded   = errors.New("app egress quota exceeded")
	ErrBadDescription  = errors.New("invalid session description")
	ErrMixedLocations  = errors.New("tracks mix local and remote")
	ErrInvalidTrackObj = errors.New("invalid track object")
)

func newErr(status int, code, desc string, err error) *Error {
	return &Error{Status: status, Code: code, Description: desc, Err: err}
}

func errGone() *Error {
	return newErr(http.StatusGone, CodeSessionError, "Session is gone or expired; create a new session", ErrSessionGone)
}

func errNotConnected() *Error {
	return newErr(http.StatusTooEarly, CodeSessionError,
		"PeerConnection is not connected; operations wait up to the connect timeout", ErrNotConnected)
}

func errSDP(desc string, err error) *Error {
	return newErr(http.StatusNotAcceptable, CodeInvalidSessionDescription, desc, err)
}

func errParams(desc string, err error) *Error {
	return newErr(http.StatusNotAcceptable, CodeInvalidParams, desc, err)
}

func errDecoding(desc string) *Error {
	return newErr(http.StatusBadRequest, CodeDecodingError, desc, ErrInvalidTrackObj)
}

func errInternal(err error) *Error {
	return newErr(http.StatusInternalServerError, CodeInternal, "Backend error", err)
}

// AsError converts any error to an *Error (internal_error if unknown).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, ErrSessionGone):
		return errGone()
	case errors.Is(err, ErrDraining), errors.Is(err, ErrClosed):
		return newErr(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "Server is shutting down; retry", err)
	}
	return errInternal(err)
}
