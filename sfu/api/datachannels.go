package api

import (
	"net/http"

	"github.com/switchboard-rtc/switchboard/sfu/session"
)

// registerDataChannels adds the DataChannel routes (CONTRACT §2.7-2.10).
// datachannels/close is exempt from the per-session call quota, like
// tracks/close: cleanup must never be refused.
func (h *Handler) registerDataChannels(prefix string) {
	establish := sdpCall(h, func(q *session.EstablishRequest) *session.SessionDescription { return q.SessionDescription },
		(*session.Session).EstablishDataChannels)
	h.mux.HandleFunc("POST "+prefix+"/sessions/{sessionId}/datachannels/establish", h.sess(true, establish))
	h.mux.HandleFunc("POST "+prefix+"/sessions/{sessionId}/datachannels/new", h.sess(true, h.newDataChannels))
	h.mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/datachannels/update", h.sess(true, h.updateDataChannels))
	h.mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/datachannels/close", h.sess(false, h.closeDataChannels))
}

// dataChannelCall runs one of datachannels/new, /update, /close.
func (h *Handler) dataChannelCall(op func(*session.Session, session.DataChannelsRequest, session.Limits) (*session.DataChannelsResponse, error)) sessHandler {
	return func(w http.ResponseWriter, r *http.Request, a *app, s *session.Session) {
		var req session.DataChannelsRequest
		if err := h.decode(w, r, &req, false); err != nil {
			h.fail(w, a.cfg.ID, err)
			return
		}
		resp, err := op(s, req, a.limits)
		if err != nil {
			h.fail(w, a.cfg.ID, err)
			return
		}
		h.ok(w, a.cfg.ID, http.StatusOK, resp)
	}
}

func (h *Handler) newDataChannels(w http.ResponseWriter, r *http.Request, a *app, s *session.Session) {
	h.dataChannelCall((*session.Session).NewDataChannels)(w, r, a, s)
}

func (h *Handler) updateDataChannels(w http.ResponseWriter, r *http.Request, a *app, s *session.Session) {
	h.dataChannelCall((*session.Session).UpdateDataChannels)(w, r, a, s)
}

func (h *Handler) closeDataChannels(w http.ResponseWriter, r *http.Request, a *app, s *session.Session) {
	h.dataChannelCall((*session.Session).CloseDataChannels)(w, r, a, s)
}
