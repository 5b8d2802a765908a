package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

// The Chrome offers in sfu/testdata feed the media-core tests and the
// sessions/new + tracks/new benchmark; `go run ./test/e2e/capture-offers`
// regenerates them. This test keeps a regenerated file honest about what its
// name promises.
func TestChromeOfferFixturesHaveTheShapeTheirNamesPromise(t *testing.T) {
	type section struct{ media, mid, direction string }
	for _, c := range []struct {
		file     string
		sections []section
		rids     []string // on the video section
	}{
		{"chrome-offer-av.sdp", []section{{"audio", "0", "sendonly"}, {"video", "1", "sendonly"}}, nil},
		{"chrome-offer-simulcast.sdp", []section{{"audio", "0", "sendonly"}, {"video", "1", "sendonly"}}, []string{"a", "b", "c"}},
		{"chrome-offer-datachannel.sdp", []section{{"application", "0", ""}}, nil},
	} {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(repoRoot(t), "sfu", "testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(raw), "\r\n") {
				t.Error("lines do not end in CRLF as Chrome writes them")
			}
			var d sdp.SessionDescription
			if err := d.UnmarshalString(string(raw)); err != nil {
				t.Fatalf("not a valid SDP: %v", err)
			}
			if len(d.MediaDescriptions) != len(c.sections) {
				t.Fatalf("%d m-sections, want %d", len(d.MediaDescriptions), len(c.sections))
			}
			for i, want := range c.sections {
				m := d.MediaDescriptions[i]
				mid, _ := m.Attribute("mid")
				got := section{m.MediaName.Media, mid, ""}
				for _, dir := range []string{"sendonly", "sendrecv", "recvonly", "inactive"} {
					if _, ok := m.Attribute(dir); ok {
						got.direction = dir
					}
				}
				if got != want {
					t.Errorf("m-section %d = %+v, want %+v", i, got, want)
				}
				if _, ok := m.Attribute("fingerprint"); !ok {
					if _, ok := d.Attribute("fingerprint"); !ok {
						t.Errorf("m-section %d has no DTLS fingerprint", i)
					}
				}
				if want.media != "video" {
					continue
				}
				var rids []string
				for _, a := range m.Attributes {
					if a.Key == "rid" {
						rids = append(rids, strings.Fields(a.Value)[0])
					}
				}
				if strings.Join(rids, ",") != strings.Join(c.rids, ",") {
					t.Errorf("video rids %v, want %v", rids, c.rids)
				}
				if sim, ok := m.Attribute("simulcast"); ok != (len(c.rids) > 0) || (ok && sim != "send "+strings.Join(c.rids, ";")) {
					t.Errorf("a=simulcast %q (present %v), want send %s", sim, ok, strings.Join(c.rids, ";"))
				}
			}
		})
	}
}
