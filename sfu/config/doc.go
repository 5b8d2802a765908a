// Package config defines the pod configuration that the operator renders for
// every SFU and TURN pod of a pool, and that `switchboard sfu`, `switchboard
// turn` and `switchboard dev` read.
//
// It is the one contract between the control plane and the media plane: the
// operator (controllers/) writes it, the pods read it. It holds plain data
// types only and must not import Kubernetes or Pion packages. Changes must be
// additive: a pod running an older build must still read a newer rendering.
//
// The rendering contains TURN HMAC secrets, so the operator stores it in a
// Secret, never a ConfigMap; app secrets appear only as SHA-256 hashes.
package config
