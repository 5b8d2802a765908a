package api

import (
	"net/http"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// registerDataChannels adds the DataChannel routes (CONTRACT §2.7-2.10).
// They are owned by the DataChannel work: until it lands they authenticate,
// count against the session quota and answer a Calls-shaped error.
func (h *Handler) registerDataChannels(prefix string) {
	h.mux.HandleFunc("POST "+prefix+"/sessions/{sessionId}/datachannels/establish", h.sess(true, h.dataChannelsTODO))
	h.mux.HandleFunc("POST "+prefix+"/sessions/{sessionId}/datachannels/new", h.sess(true, h.dataChannelsTODO))
	h.mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/datachannels/update", h.sess(true, h.dataChannelsTODO))
	h.mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/datachannels/close", h.sess(false, h.dataChannelsTODO))
}

func (h *Handler) dataChannelsTODO(w http.ResponseWriter, _ *http.Request, a *app, _ *session.Session) {
	h.fail(w, a.cfg.ID, &session.Error{Status: http.StatusNotImplemented, Code: session.CodeInternal,
		Description: "DataChannels are not available on this server yet"})
}
