package session

import (
	"strings"
	"testing"
)

const sdpHead = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

func section(media, port, mid string, extra ...string) string {
	proto := "UDP/TLS/RTP/SAVPF 111"
	if media == "application" {
		proto = "UDP/DTLS/SCTP webrtc-datachannel"
	}
	s := "m=" + media + " " + port + " " + proto + "\r\nc=IN IP4 0.0.0.0\r\na=mid:" + mid + "\r\n"
	for _, x := range extra {
		s += x + "\r\n"
	}
	return s
}

func TestHasApplicationIgnoresRejectedSections(t *testing.T) {
	cases := []struct {
		name string
		sdp  string
		want bool
	}{
		{"audio only", sdpHead + section("audio", "9", "0"), false},
		{"application", sdpHead + section("audio", "9", "0") + section("application", "9", "1"), true},
		{"rejected application", sdpHead + section("application", "0", "0"), false},
		{"bundle-only application", sdpHead + section("application", "0", "0", "a=bundle-only"), true},
		{"not sdp", "hello", false},
	}
	for _, c := range cases {
		if got := hasApplication(c.sdp); got != c.want {
			t.Errorf("%s: hasApplication = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestUniqueApplicationMidRenamesOnlyADuplicate(t *testing.T) {
	clash := sdpHead + "a=group:BUNDLE 2 0 2\r\n" + section("audio", "9", "2") + section("video", "9", "0") + section("application", "9", "2")
	out, err := uniqueApplicationMid(clash)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "a=group:BUNDLE 2 0 3") || strings.Count(out, "a=mid:2") != 1 || !strings.Contains(out, "a=mid:3") {
		t.Fatalf("duplicate application mid not renamed to 3:\n%s", out)
	}
	fine := sdpHead + "a=group:BUNDLE 0 1 2\r\n" + section("audio", "9", "0") + section("video", "9", "1") + section("application", "9", "2")
	if out, err := uniqueApplicationMid(fine); err != nil || out != fine {
		t.Fatalf("an offer without a clash must stay byte for byte: %v\n%s", err, out)
	}
}

func TestValidateDataChannels(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	cases := []struct {
		name  string
		items []DataChannelObject
		code  string
		local bool
	}{
		{"local", []DataChannelObject{{Location: "local", DataChannelName: "a"}}, "", true},
		{"remote", []DataChannelObject{{Location: "remote", SessionID: "s", DataChannelName: "a"}}, "", false},
		{"mixed", []DataChannelObject{{Location: "local", DataChannelName: "a"}, {Location: "remote", SessionID: "s", DataChannelName: "a"}}, CodeInvalidParams, false},
		{"both limits", []DataChannelObject{{Location: "local", DataChannelName: "a", MaxRetransmits: n(1), MaxPacketLifeTime: n(1)}}, CodeInvalidParams, false},
		{"too many retransmits", []DataChannelObject{{Location: "local", DataChannelName: "a", MaxRetransmits: n(70000)}}, CodeInvalidParams, false},
		{"remote without session", []DataChannelObject{{Location: "remote", DataChannelName: "a"}}, CodeDecodingError, false},
		{"no location", []DataChannelObject{{DataChannelName: "a"}}, CodeDecodingError, false},
	}
	for _, c := range cases {
		local, err := validateDataChannels(c.items)
		code := ""
		if err != nil {
			code = AsError(err).Code
		}
		if code != c.code || (err == nil && local != c.local) {
			t.Errorf("%s: got local=%v code %q, want local=%v code %q", c.name, local, code, c.local, c.code)
		}
	}
}

func TestOptionsOfMirrorsThePublisherUnlessSet(t *testing.T) {
	f := false
	one := int64(1)
	pub := optionsOf(DataChannelObject{Ordered: &f, MaxRetransmits: &one}, nil)
	if pub.ordered || pub.maxRetransmits == nil || *pub.maxRetransmits != 1 || pub.maxPacketLifeTime != nil {
		t.Fatalf("publisher options: %+v", pub)
	}
	if sub := optionsOf(DataChannelObject{}, &pub); sub.ordered || sub.maxRetransmits == nil || *sub.maxRetransmits != 1 {
		t.Fatalf("a subscriber without options must mirror the publisher: %+v", sub)
	}
	life := int64(500)
	sub := optionsOf(DataChannelObject{MaxPacketLifeTime: &life}, &pub)
	if sub.maxRetransmits != nil || sub.maxPacketLifeTime == nil || *sub.maxPacketLifeTime != 500 {
		t.Fatalf("a subscriber's own limit replaces the publisher's: %+v", sub)
	}
	if d := optionsOf(DataChannelObject{}, nil); !d.ordered || d.maxRetransmits != nil || d.maxPacketLifeTime != nil {
		t.Fatalf("defaults are reliable and ordered: %+v", d)
	}
}
