package forward

import "strings"

type codecFamily uint8

const (
	familyOther codecFamily = iota // no keyframe detection: switch at once
	familyAudio
	familyVP8
	familyVP9
	familyH264
)

func familyOf(mime string) codecFamily {
	m := strings.ToLower(mime)
	switch {
	case strings.HasPrefix(m, "audio/"):
		return familyAudio
	case m == "video/vp8":
		return familyVP8
	case m == "video/vp9":
		return familyVP9
	case m == "video/h264":
		return familyH264
	}
	return familyOther
}

// gated reports whether switching onto a layer must wait for a keyframe.
func (f codecFamily) gated() bool {
	return f == familyVP8 || f == familyVP9 || f == familyH264
}

// isKeyframe reports whether an RTP payload starts a keyframe. It never
// reads past the slice and never allocates.
func isKeyframe(f codecFamily, p []byte) bool {
	switch f {
	case familyVP8:
		return vp8Keyframe(p)
	case familyVP9:
		// P (inter-picture) bit clear and B (start of frame) set.
		return len(p) > 0 && p[0]&0x40 == 0 && p[0]&0x08 != 0
	case familyH264:
		return h264Keyframe(p)
	}
	return true
}

func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte follows
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	// Start of partition 0, and the VP8 frame header's P bit clear.
	if p[0]&0x10 == 0 || p[0]&0x07 != 0 || len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch nal := p[0] & 0x1f; {
	case nal == 5 || nal == 7:
		return true
	case nal == 24: // STAP-A
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if i >= len(p) {
				break
			}
			if t := p[i] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += size
		}
	case nal == 28: // FU-A start
		if len(p) >= 2 && p[1]&0x80 != 0 {
			t := p[1] & 0x1f
			return t == 5 || t == 7
		}
	}
	return false
}
