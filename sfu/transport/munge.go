package transport

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// RejectLikeOffer returns answer with every m-section the offer rejected
// (port 0, e.g. after transceiver.stop()) rejected as well and left out of
// the BUNDLE group, as JSEP requires; Pion answers them as inactive.
func RejectLikeOffer(offer, answer string) (string, error) {
	var o, a sdp.SessionDescription
	if err := o.UnmarshalString(offer); err != nil {
		return "", fmt.Errorf("parse offer: %w", err)
	}
	rejected := map[string]bool{}
	for _, md := range o.MediaDescriptions {
		if md.MediaName.Port.Value == 0 {
			if mid, ok := md.Attribute(sdp.AttrKeyMID); ok {
				rejected[mid] = true
			}
		}
	}
	if len(rejected) == 0 {
		return answer, nil
	}
	if err := a.UnmarshalString(answer); err != nil {
		return "", fmt.Errorf("parse answer: %w", err)
	}
	for _, md := range a.MediaDescriptions {
		if mid, ok := md.Attribute(sdp.AttrKeyMID); ok && rejected[mid] {
			md.MediaName.Port.Value = 0
		}
	}
	for i, attr := range a.Attributes {
		if attr.Key != sdp.AttrKeyGroup || !strings.HasPrefix(attr.Value, "BUNDLE") {
			continue
		}
		fields := strings.Fields(attr.Value)
		kept := fields[:1]
		for _, mid := range fields[1:] {
			if !rejected[mid] {
				kept = append(kept, mid)
			}
		}
		a.Attributes[i].Value = strings.Join(kept, " ")
	}
	out, err := a.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal answer: %w", err)
	}
	return string(out), nil
}
