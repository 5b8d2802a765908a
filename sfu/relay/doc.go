// Package relay carries published tracks between the SFU pods of one
// fleet: one relay stream per (track, destination pod), fanned out on the
// destination to every local subscriber.
//
// A relay stream is an HTTP/1.1 connection upgraded to "switchboard-relay"
// on the source pod's API port, authenticated with the fleet token by the
// fleet router before it reaches Server. Frames are
// [type:1][layer:1][length:2 big-endian][payload]: a JSON hello (kind,
// codec, simulcast rids), RTP packets of every layer (rewritten to one
// continuous stream per layer by a forward.DownTrack on the source pod),
// layer list updates and an end marker from source to destination;
// keyframe requests per layer from destination to source.
//
// DataChannel relay streams (channel.go) work the same way for one
// published DataChannel: GET {prefix}{app}/{session}/datachannels/{name},
// a JSON hello with the channel's delivery policy, then message frames
// (fragmented past one frame) and an end marker. One stream per (channel,
// destination pod); the destination fans messages out to its local
// subscriptions through Channel.Subscribe. The canReply grant and the
// holder's replies travel back on the same stream.
//
// It owns relay streams on both sides and their goroutines. It imports
// sfu/forward and Pion types only; never sfu/session, sfu/api or
// Kubernetes packages. Relay bytes are not client egress and are never
// reported to sfu/usage.
package relay
