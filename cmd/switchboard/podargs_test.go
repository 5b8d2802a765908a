package main

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// TestRenderedPodArgumentsParseWithTheCommandsFlags renders SFU and TURN pod
// templates the way the operator does and parses their arguments with the
// real flag sets of `switchboard sfu` and `switchboard turn`, so a flag
// renamed on either side fails here instead of crash-looping pods.
func TestRenderedPodArgumentsParseWithTheCommandsFlags(t *testing.T) {
	pools := map[string]v1alpha1.SFUPoolSpec{
		"direct":       {Media: v1alpha1.MediaSpec{Exposure: v1alpha1.ExposureDirect}},
		"host-network": {Media: v1alpha1.MediaSpec{Exposure: v1alpha1.ExposureHostNetwork}},
		"turn-ingress-tls": {
			Media: v1alpha1.MediaSpec{Exposure: v1alpha1.ExposureTURNIngress},
			TURN: v1alpha1.TURNSpec{
				Enabled: ptr.To(true),
				Listeners: []v1alpha1.TURNListener{
					{Name: "udp", Protocol: v1alpha1.TURNProtocolUDP, Port: 3478},
					{Name: "tls", Protocol: v1alpha1.TURNProtocolTLS, Port: 5349},
				},
				TLSSecretRef: &corev1.LocalObjectReference{Name: "turn-tls"},
			},
		},
	}
	for name, spec := range pools {
		t.Run(name, func(t *testing.T) {
			pool := &v1alpha1.SFUPool{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "media"}, Spec: spec}

			sfuC := render.SFUStatefulSet(pool, "hash").Spec.Template.Spec.Containers[0]
			if len(sfuC.Args) == 0 || sfuC.Args[0] != "sfu" {
				t.Fatalf("sfu container args %v do not start with the sfu command", sfuC.Args)
			}
			f, err := parseSFUFlags(sfuC.Args[1:])
			if err != nil {
				t.Fatalf("switchboard sfu rejects the rendered args %v: %v", sfuC.Args, err)
			}
			if f.cfgPath != render.ConfigPath {
				t.Errorf("sfu reads config from %q, the pod mounts it at %q", f.cfgPath, render.ConfigPath)
			}
			if want := ":" + probePort(t, sfuC); !strings.HasSuffix(f.listen, want) {
				t.Errorf("sfu listens on %q but the readiness probe checks port %s", f.listen, want)
			}
			if f.advertise == "" {
				t.Error("sfu pods advertise no address")
			}

			d := render.TURNDeployment(pool, "hash")
			if d == nil {
				return
			}
			turnC := d.Spec.Template.Spec.Containers[0]
			if len(turnC.Args) == 0 || turnC.Args[0] != "turn" {
				t.Fatalf("turn container args %v do not start with the turn command", turnC.Args)
			}
			tf, err := parseTURNFlags(turnC.Args[1:])
			if err != nil {
				t.Fatalf("switchboard turn rejects the rendered args %v: %v", turnC.Args, err)
			}
			if want := ":" + probePort(t, turnC); !strings.HasSuffix(tf.healthListen, want) {
				t.Errorf("turn health on %q but the readiness probe checks port %s", tf.healthListen, want)
			}
			ports := map[int32]bool{}
			for _, p := range turnC.Ports {
				ports[p.ContainerPort] = true
			}
			for flagName, port := range map[string]int{"udp": tf.udpPort, "tcp": tf.tcpPort, "tls": tf.tlsPort} {
				if port != 0 && !ports[int32(port)] {
					t.Errorf("turn --%s=%d has no container port", flagName, port)
				}
			}
			if spec.Media.Exposure == v1alpha1.ExposureTURNIngress && tf.sfuService == "" && tf.sfuPeers == "" {
				t.Error("TURNIngress pool's TURN pods are not limited to the SFU pods")
			}
			if tf.tlsPort != 0 && (tf.tlsCert == "" || tf.tlsKey == "") {
				t.Error("TLS listener without certificate flags")
			}
		})
	}
}

// probePort is the container port number the readiness probe checks,
// resolving a named port through the container's ports.
func probePort(t *testing.T, c corev1.Container) string {
	t.Helper()
	p := c.ReadinessProbe.HTTPGet.Port
	if p.StrVal == "" {
		return strconv.Itoa(p.IntValue())
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return strconv.Itoa(int(cp.ContainerPort))
		}
	}
	t.Fatalf("readiness probe port %q is not a container port of %s", p.StrVal, c.Name)
	return ""
}
