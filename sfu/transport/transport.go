package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ErrNoCodec is returned when an m-section carries no usable media codec.
var ErrNoCodec = errors.New("no media codec negotiated")

// Config configures a Transport.
type Config struct {
	// Conn is the node's ICE UDP socket. The Transport owns it from now on.
	Conn net.PacketConn
	// AdvertiseIPs replace the host addresses in candidates (NAT 1:1). Empty
	// means the addresses of the local interfaces.
	AdvertiseIPs []string
	// Logger receives transport logs; nil means slog.Default().
	Logger *slog.Logger
}

// Transport builds PeerConnections that share one UDP port and one DTLS
// certificate.
type Transport struct {
	conn    net.PacketConn
	mux     ice.UDPMux
	cert    webrtc.Certificate
	lite    *webrtc.API
	full    *webrtc.API
	log     *slog.Logger
	udpAddr net.Addr
}

// New sets up the media engine, interceptors and ICE mux.
func New(cfg Config) (*Transport, error) {
	if cfg.Conn == nil {
		return nil, errors.New("transport: no UDP socket")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if uc, ok := cfg.Conn.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		// Bursts from many publishers overflow the default 208 KB buffer.
		_ = uc.SetReadBuffer(4 << 20)
		_ = uc.SetWriteBuffer(4 << 20)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("transport: certificate key: %w", err)
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return nil, fmt.Errorf("transport: certificate: %w", err)
	}
	t := &Transport{
		conn:    cfg.Conn,
		mux:     webrtc.NewICEUDPMux(pionLogs{log: log}.NewLogger("icemux"), cfg.Conn),
		cert:    *cert,
		log:     log,
		udpAddr: cfg.Conn.LocalAddr(),
	}
	loopback := false
	if ua, ok := cfg.Conn.LocalAddr().(*net.UDPAddr); ok && ua.IP.IsLoopback() {
		loopback = true
	}
	for _, ip := range cfg.AdvertiseIPs {
		if p := net.ParseIP(ip); p != nil && p.IsLoopback() {
			loopback = true
		}
	}
	if t.lite, err = t.newAPI(true, loopback, cfg.AdvertiseIPs); err != nil {
		return nil, err
	}
	if t.full, err = t.newAPI(false, loopback, cfg.AdvertiseIPs); err != nil {
		return nil, err
	}
	return t, nil
}

// MediaEngine returns a media engine with the codecs and header extensions
// the SFU negotiates. Test peers use it too, so both sides agree.
func MediaEngine() (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("transport: codecs: %w", err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, fmt.Errorf("transport: simulcast extensions: %w", err)
	}
	return m, nil
}

func (t *Transport) newAPI(lite, loopback bool, advertise []string) (*webrtc.API, error) {
	m, err := MediaEngine()
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	// NACKs toward publishers come from Pion's generator. NACKs from
	// subscribers are answered by sfu/forward from one shared copy of each
	// received packet; Pion's responder would copy (and allocate) every
	// packet for every subscriber.
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, fmt.Errorf("transport: nack generator: %w", err)
	}
	ir.Add(gen)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("transport: rtcp reports: %w", err)
	}
	// Transport-wide congestion control feedback lets publishers (Chrome)
	// estimate their uplink and raise their bitrate.
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, fmt.Errorf("transport: twcc: %w", err)
	}
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{log: t.log}}
	se.SetLite(lite)
	se.SetICEUDPMux(t.mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(loopback)
	// Only a full-ICE (thirdparty) session sends connectivity checks; never
	// toward link-local (cloud metadata), multicast or unspecified addresses,
	// nor loopback unless the node itself is on loopback (dev and tests).
	se.SetRemoteIPFilter(func(ip net.IP) bool { return RemoteAllowed(ip, loopback) })
	if len(advertise) > 0 {
		// Host candidates carry the advertised addresses instead of the
		// pod's own (NAT 1:1: node IP in HostNetwork, pod IP in Direct).
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: advertise, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, fmt.Errorf("transport: advertised addresses: %w", err)
		}
	}
	se.SetSRTPProtectionProfiles(
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AEAD_AES_256_GCM,
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	)
	se.SetReceiveMTU(1500)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// NewPeerConnection makes a PeerConnection on the node's port. thirdparty
// selects full ICE (the SFU then controls toward an ICE-lite peer).
func (t *Transport) NewPeerConnection(thirdparty bool) (*webrtc.PeerConnection, error) {
	api := t.lite
	if thirdparty {
		api = t.full
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		Certificates:  []webrtc.Certificate{t.cert},
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return nil, fmt.Errorf("transport: new peer connection: %w", err)
	}
	return pc, nil
}

// API returns the Pion API of ICE-lite (thirdparty=false) or full ICE
// sessions, for callers that make RTP senders themselves.
func (t *Transport) API(thirdparty bool) *webrtc.API {
	if thirdparty {
		return t.full
	}
	return t.lite
}

// LocalAddr is the address of the node's UDP socket.
func (t *Transport) LocalAddr() net.Addr { return t.udpAddr }

// Close releases the UDP socket. Close every PeerConnection first.
func (t *Transport) Close() error {
	err := t.mux.Close()
	if cerr := t.conn.Close(); cerr != nil && err == nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

// RemoteAllowed reports whether the SFU may send ICE checks to ip.
func RemoteAllowed(ip net.IP, allowLoopback bool) bool {
	switch {
	case ip == nil, ip.IsUnspecified(), ip.IsMulticast(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return false
	case ip.IsLoopback():
		return allowLoopback
	}
	return true
}

// MediaSection describes one m-section of a negotiated description.
type MediaSection struct {
	Mid       string
	Kind      webrtc.RTPCodecType
	Direction webrtc.RTPTransceiverDirection
	Rejected  bool
	// Codec is the first media codec (RTX, RED, FEC skipped); zero if none.
	Codec webrtc.RTPCodecCapability
	// Rids are the simulcast stream IDs the section sends, in SDP order.
	Rids []string
}

// ParseSections lists the audio and video m-sections of an SDP.
func ParseSections(raw string) ([]MediaSection, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("parse sdp: %w", err)
	}
	out := make([]MediaSection, 0, len(d.MediaDescriptions))
	for _, md := range d.MediaDescriptions {
		kind := webrtc.NewRTPCodecType(md.MediaName.Media)
		if kind == 0 {
			continue
		}
		s := MediaSection{Kind: kind, Rejected: md.MediaName.Port.Value == 0}
		if mid, ok := md.Attribute(sdp.AttrKeyMID); ok {
			s.Mid = mid
		}
		s.Direction = webrtc.RTPTransceiverDirectionSendrecv
		for _, dir := range []string{"sendonly", "recvonly", "inactive", "sendrecv"} {
			if _, ok := md.Attribute(dir); ok {
				s.Direction = webrtc.NewRTPTransceiverDirection(dir)
			}
		}
		for _, a := range md.Attributes {
			if a.Key == "rid" {
				f := strings.Fields(a.Value)
				if len(f) >= 2 && f[1] == "send" {
					s.Rids = append(s.Rids, f[0])
				}
			}
		}
		for _, pt := range md.MediaName.Formats {
			c, ok := codecOf(md, pt)
			if !ok {
				continue
			}
			s.Codec = c
			break
		}
		out = append(out, s)
	}
	return out, nil
}

func codecOf(md *sdp.MediaDescription, pt string) (webrtc.RTPCodecCapability, bool) {
	var c webrtc.RTPCodecCapability
	kind := md.MediaName.Media
	for _, a := range md.Attributes {
		f := strings.SplitN(a.Value, " ", 2)
		if len(f) != 2 || f[0] != pt {
			continue
		}
		switch a.Key {
		case "rtpmap":
			parts := strings.Split(f[1], "/")
			name := strings.ToLower(parts[0])
			switch name {
			case "rtx", "red", "ulpfec", "flexfec-03", "telephone-event", "cn":
				return c, false
			}
			c.MimeType = kind + "/" + parts[0]
			if len(parts) > 1 {
				var rate uint32
				_, _ = fmt.Sscan(parts[1], &rate)
				c.ClockRate = rate
			}
			if len(parts) > 2 {
				var ch uint16
				_, _ = fmt.Sscan(parts[2], &ch)
				c.Channels = ch
			}
		case "fmtp":
			c.SDPFmtpLine = f[1]
		}
	}
	return c, c.MimeType != ""
}
