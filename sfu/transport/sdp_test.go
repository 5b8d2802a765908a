package transport

import (
	"net"
	"strings"
	"testing"
)

const browserOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n" +
	"m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:96 VP8/90000\r\na=rid:h send\r\na=rid:l send\r\na=simulcast:send h;l\r\n"

func TestParseSections(t *testing.T) {
	secs, err := ParseSections(browserOffer)
	if err != nil {
		t.Fatal(err)
	}
	if len(secs) != 2 {
		t.Fatalf("sections: %+v", secs)
	}
	a, v := secs[0], secs[1]
	if a.Mid != "0" || a.Codec.MimeType != "audio/opus" || a.Codec.ClockRate != 48000 || a.Codec.Channels != 2 ||
		a.Codec.SDPFmtpLine != "minptime=10;useinbandfec=1" || a.Rejected || a.Direction.String() != "sendonly" {
		t.Fatalf("audio: %+v", a)
	}
	if v.Mid != "1" || v.Codec.MimeType != "video/VP8" || !v.Rejected || strings.Join(v.Rids, ",") != "h,l" {
		t.Fatalf("video: %+v", v)
	}
}

func TestRejectLikeOffer(t *testing.T) {
	answer := strings.Replace(strings.ReplaceAll(browserOffer, "sendonly", "recvonly"), "m=video 0 ", "m=video 9 ", 1)
	out, err := RejectLikeOffer(browserOffer, answer)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "m=video 0 ") || !strings.Contains(out, "a=group:BUNDLE 0\r\n") || !strings.Contains(out, "m=audio 9 ") {
		t.Fatalf("answer:\n%s", out)
	}
}

func TestCheckSDPBoundsCardinality(t *testing.T) {
	if err := CheckSDP(browserOffer); err != nil {
		t.Fatal(err)
	}
	many := browserOffer + strings.Repeat("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n", MaxMediaSections)
	if err := CheckSDP(many); err == nil {
		t.Fatal("too many m-sections accepted")
	}
	cands := browserOffer + strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", MaxCandidates+1)
	if err := CheckSDP(cands); err == nil {
		t.Fatal("too many candidates accepted")
	}
}

// FuzzParseSections: no input may panic the SDP helpers (checklist SDP-01).
func FuzzParseSections(f *testing.F) {
	f.Add(browserOffer)
	f.Add("v=0\r\nm=video 0 x\r\na=rtpmap:\r\na=rid:\r\n")
	f.Add("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus\r\na=fmtp:111\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		if CheckSDP(s) != nil {
			return
		}
		_, _ = ParseSections(s)
		_, _ = RejectLikeOffer(s, s)
	})
}

func TestRemoteAllowedKeepsChecksOffMetadataAndLoopback(t *testing.T) {
	cases := []struct {
		ip       string
		loopback bool
		want     bool
	}{
		{"169.254.169.254", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"224.0.0.1", false, false},
		{"0.0.0.0", false, false},
		{"127.0.0.1", false, false},
		{"127.0.0.1", true, true},
		{"203.0.113.7", false, true},
		{"10.1.2.3", false, true},
	}
	for _, c := range cases {
		if got := RemoteAllowed(net.ParseIP(c.ip), c.loopback); got != c.want {
			t.Errorf("%s (loopback node %v): got %v", c.ip, c.loopback, got)
		}
	}
}
