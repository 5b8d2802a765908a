package render

import (
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/sfu/config"
)

// Pod-level constants shared by the SFU and TURN templates. docs/operator.md
// lists them for the pod engineers.
const (
	// ConfigDir is where the <pool>-config Secret is mounted.
	ConfigDir = "/etc/switchboard"
	// ConfigPath is the rendered configuration file in pods.
	ConfigPath = ConfigDir + "/" + config.FileName
	// TLSDir is where the TURN TLS Secret is mounted.
	TLSDir = "/etc/switchboard/tls"
	// HTTPPort serves the session API (SFU), /health, /ready and /metrics.
	HTTPPort = 8080
	// HTTPPortName names HTTPPort on containers and Services.
	HTTPPortName = "http"
	// MediaPortName names the SFU's ICE UDP port.
	MediaPortName = "media"
	// DrainMargin is added to the drain timeout for the pod's
	// terminationGracePeriodSeconds, so the kubelet does not kill a pod that
	// is still flushing its last usage report after draining.
	DrainMargin = 15 * time.Second
	// RunAsID is the non-root UID and GID of every container.
	RunAsID = int64(65532)
	// Binary is the command of SFU and TURN containers: the path `make image`
	// puts the binary at; the image must have
	// it on its PATH. Set explicitly so the image's entrypoint does not matter.
	Binary = "/switchboard"

	sfuComponent  = "sfu"
	turnComponent = "turn"
	tmpVolume     = "tmp"
	configVolume  = "config"
	tlsVolume     = "tls"
)

// Labels are the labels of every child of the pool; component ("sfu",
// "turn") is left out for objects that belong to the whole pool.
func Labels(p *v1alpha1.SFUPool, component string) map[string]string {
	l := map[string]string{
		v1alpha1.LabelName:      "switchboard",
		v1alpha1.LabelInstance:  p.Name,
		v1alpha1.LabelManagedBy: v1alpha1.ManagedBy,
		v1alpha1.LabelPool:      p.Name,
	}
	if component != "" {
		l[v1alpha1.LabelComponent] = component
	}
	return l
}

// SelectorLabels select the pool's pods of one component. They never change
// for the life of a pool (selectors are immutable).
func SelectorLabels(p *v1alpha1.SFUPool, component string) map[string]string {
	return map[string]string{
		v1alpha1.LabelName:      "switchboard",
		v1alpha1.LabelPool:      p.Name,
		v1alpha1.LabelComponent: component,
	}
}

func objectMeta(p *v1alpha1.SFUPool, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: Labels(p, component)}
}

// ServiceAccount is the pods' identity. Pods need no Kubernetes API access
// (DESIGN 2.3), so the token is not mounted.
func ServiceAccount(p *v1alpha1.SFUPool) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   objectMeta(p, ServiceAccountName(p), ""),
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// ConfigSecret holds the rendered pod configuration under config.FileName.
// It is a Secret because the configuration carries TURN HMAC secrets.
func ConfigSecret(p *v1alpha1.SFUPool, pod config.Pod) (*corev1.Secret, error) {
	b, err := PodConfigJSON(pod)
	if err != nil {
		return nil, err
	}
	m := objectMeta(p, ConfigSecretName(p), "")
	m.Annotations = map[string]string{v1alpha1.AnnotationConfigVersion: pod.Version}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: m,
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{config.FileName: b},
	}, nil
}

// SFURestartHash hashes the settings SFU pods read only at start (the media
// section of the configuration). App changes are applied live and do not
// change it.
func SFURestartHash(pod config.Pod) string {
	return hashJSON(struct {
		Media          config.Media
		TrustedProxies []string
	}{pod.Media, pod.TrustedProxies})
}

// TURNRestartHash hashes the settings TURN pods read only at start.
func TURNRestartHash(pod config.Pod) string {
	return hashJSON(struct {
		Realm            string
		AllowedPeerCIDRs []string
		Media            config.Media
	}{pod.TURN.Realm, pod.TURN.AllowedPeerCIDRs, pod.Media})
}

// SFUStatefulSet is the SFU workload. A StatefulSet gives every pod a stable
// name (session IDs name their pod) and DNS name through the internal
// headless Service, and replaces a pod only after the old one is gone, which
// suits fixed host ports and draining; see docs/proposals/2026-11-23-sfu-statefulset.md.
func SFUStatefulSet(pool *v1alpha1.SFUPool, restartHash string) *appsv1.StatefulSet {
	p := pool.DeepCopy()
	p.Default()
	s := p.Spec
	hostNet := s.Media.Exposure == v1alpha1.ExposureHostNetwork

	advertise := "$(POD_IP)"
	if hostNet {
		advertise = "$(NODE_IP)"
	}
	args := []string{
		"sfu",
		"--config=" + ConfigPath,
		"--listen=:" + strconv.Itoa(HTTPPort),
		"--advertise=" + advertise,
	}
	mediaPort := corev1.ContainerPort{Name: MediaPortName, ContainerPort: s.Media.UDPPort, Protocol: corev1.ProtocolUDP}
	if hostNet {
		mediaPort.HostPort = s.Media.UDPPort
	}
	c := corev1.Container{
		Name:            sfuComponent,
		Image:           s.Image,
		ImagePullPolicy: s.ImagePullPolicy,
		Command:         []string{Binary},
		Args:            args,
		Env:             downwardEnv(),
		Ports: []corev1.ContainerPort{
			{Name: HTTPPortName, ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
			mediaPort,
		},
		Resources:       resourcesOrDefault(s.Resources, "500m", "256Mi", "1Gi"),
		LivenessProbe:   probe("/health", 3),
		ReadinessProbe:  probe("/ready", 1),
		SecurityContext: containerSecurityContext(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: configVolume, MountPath: ConfigDir, ReadOnly: true},
			{Name: tmpVolume, MountPath: "/tmp"},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	spec := podSpec(p, c, sfuComponent)
	if hostNet {
		// HostNetwork exposure is the one exception to Pod Security
		// "restricted" (docs/operator.md): the pod binds the node's UDP port
		// so each pod is reachable on its node's address.
		spec.HostNetwork = true
		spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
		spec.Affinity = withOnePerNode(spec.Affinity, SelectorLabels(p, sfuComponent))
	}
	spec.TerminationGracePeriodSeconds = ptr.To(int64((s.DrainTimeout.Duration + DrainMargin) / time.Second))

	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: objectMeta(p, SFUName(p), sfuComponent),
		Spec: appsv1.StatefulSetSpec{
			ServiceName:         InternalServiceName(p),
			Selector:            &metav1.LabelSelector{MatchLabels: SelectorLabels(p, sfuComponent)},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      Labels(p, sfuComponent),
					Annotations: map[string]string{v1alpha1.AnnotationRestartHash: restartHash},
				},
				Spec: spec,
			},
		},
	}
	if s.Autoscaling == nil {
		// With autoscaling the HorizontalPodAutoscaler or the operator's
		// load-driven scaling moves replicas; the controller fills in the
		// value with SetSFUScale, which this pure function cannot know.
		sts.Spec.Replicas = s.Replicas
	}
	return sts
}

// SetSFUScale sets the SFU StatefulSet among children to replicas pods from
// ordinal start (spec.ordinals.start, left out when 0). A nil replicas
// keeps what the rendering has.
func SetSFUScale(children []Child, replicas *int32, start int32) {
	for _, c := range children {
		sts, ok := c.Object.(*appsv1.StatefulSet)
		if !ok || sts.Labels[v1alpha1.LabelComponent] != sfuComponent {
			continue
		}
		if replicas != nil {
			sts.Spec.Replicas = ptr.To(*replicas)
		}
		sts.Spec.Ordinals = nil
		if start > 0 {
			sts.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: start}
		}
	}
}

// TURNDeployment is the TURN workload, or nil when TURN is off. TURN pods
// hold no state that outlives an allocation's refresh, so a Deployment with
// surge rollouts suits them.
func TURNDeployment(pool *v1alpha1.SFUPool, restartHash string) *appsv1.Deployment {
	p := pool.DeepCopy()
	p.Default()
	s := p.Spec
	if !s.TURNEnabled() {
		return nil
	}
	args := []string{
		"turn",
		"--config=" + ConfigPath,
		"--health-listen=:" + strconv.Itoa(HTTPPort),
		"--public-ip=$(POD_IP)",
	}
	// Every listener flag is set, 0 for a protocol the pool does not list,
	// because the command's own defaults open UDP, TCP and TLS.
	udp, tcp, tls := 0, 0, 0
	ports := []corev1.ContainerPort{{Name: HTTPPortName, ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP}}
	hasTLS := false
	for _, l := range s.TURN.Listeners {
		switch l.Protocol {
		case v1alpha1.TURNProtocolUDP:
			udp = int(l.Port)
			ports = append(ports, corev1.ContainerPort{Name: "turn-" + l.Name, ContainerPort: l.Port, Protocol: corev1.ProtocolUDP})
		case v1alpha1.TURNProtocolTCP:
			tcp = int(l.Port)
			ports = append(ports, corev1.ContainerPort{Name: "turn-" + l.Name, ContainerPort: l.Port, Protocol: corev1.ProtocolTCP})
		case v1alpha1.TURNProtocolTLS:
			hasTLS = true
			tls = int(l.Port)
			args = append(args, "--tls-cert="+TLSDir+"/"+corev1.TLSCertKey, "--tls-key="+TLSDir+"/"+corev1.TLSPrivateKeyKey)
			ports = append(ports, corev1.ContainerPort{Name: "turn-" + l.Name, ContainerPort: l.Port, Protocol: corev1.ProtocolTCP})
		}
	}
	args = append(args, "--udp="+strconv.Itoa(udp), "--tcp="+strconv.Itoa(tcp), "--tls="+strconv.Itoa(tls))
	if s.Media.Exposure == v1alpha1.ExposureTURNIngress {
		// The relay may reach the SFU pods' media port and nothing else; the
		// headless Service lists every SFU pod's address.
		args = append(args, "--sfu-service="+InternalServiceName(p)+"."+namespace(p)+".svc")
	}
	mounts := []corev1.VolumeMount{
		{Name: configVolume, MountPath: ConfigDir, ReadOnly: true},
		{Name: tmpVolume, MountPath: "/tmp"},
	}
	if hasTLS {
		mounts = append(mounts, corev1.VolumeMount{Name: tlsVolume, MountPath: TLSDir, ReadOnly: true})
	}
	c := corev1.Container{
		Name:                     turnComponent,
		Image:                    s.Image,
		ImagePullPolicy:          s.ImagePullPolicy,
		Command:                  []string{Binary},
		Args:                     args,
		Env:                      downwardEnv(),
		Ports:                    ports,
		Resources:                resourcesOrDefault(s.TURN.Resources, "250m", "128Mi", "512Mi"),
		LivenessProbe:            probe("/health", 3),
		ReadinessProbe:           probe("/ready", 1),
		SecurityContext:          containerSecurityContext(),
		VolumeMounts:             mounts,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	spec := podSpec(p, c, turnComponent)
	if hasTLS && s.TURN.TLSSecretRef != nil {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: tlsVolume, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: s.TURN.TLSSecretRef.Name, DefaultMode: ptr.To(int32(0o440))},
		}})
	}
	// Allocations live at most a refresh interval (10 min by default) past
	// their last refresh; clients re-allocate on another pod, so TURN waits
	// only the pool's drain timeout.
	spec.TerminationGracePeriodSeconds = ptr.To(int64((s.DrainTimeout.Duration + DrainMargin) / time.Second))
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(p, TURNName(p), turnComponent),
		Spec: appsv1.DeploymentSpec{
			Replicas: s.TURN.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: SelectorLabels(p, turnComponent)},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      Labels(p, turnComponent),
					Annotations: map[string]string{v1alpha1.AnnotationRestartHash: restartHash},
				},
				Spec: spec,
			},
		},
	}
}

// APIService publishes the session API of every ready SFU pod.
func APIService(pool *v1alpha1.SFUPool) *corev1.Service {
	p := pool.DeepCopy()
	p.Default()
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(p, APIServiceName(p), sfuComponent),
		Spec: corev1.ServiceSpec{
			Type:     p.Spec.API.ServiceType,
			Selector: SelectorLabels(p, sfuComponent),
			Ports: []corev1.ServicePort{{
				Name: HTTPPortName, Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString(HTTPPortName),
			}},
		},
	}
}

// InternalService is the headless Service of the SFU StatefulSet: every pod,
// ready or not, gets the DNS name <pod>.<pool>-sfu-internal.<ns>.svc, which
// pods use to forward API calls and relay tracks to each other.
func InternalService(pool *v1alpha1.SFUPool) *corev1.Service {
	p := pool.DeepCopy()
	p.Default()
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(p, InternalServiceName(p), sfuComponent),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 SelectorLabels(p, sfuComponent),
			PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{
				Name: HTTPPortName, Protocol: corev1.ProtocolTCP, Port: HTTPPort, TargetPort: intstr.FromString(HTTPPortName),
			}},
		},
	}
}

// MediaService lists the ready SFU pods' media addresses (headless, UDP): in
// TURNIngress mode it is the allowlist TURN pods relay to; in Direct mode it
// names the media endpoints for tooling. In HostNetwork mode pods bind their
// node's port and there is no media Service (nil).
func MediaService(pool *v1alpha1.SFUPool) *corev1.Service {
	p := pool.DeepCopy()
	p.Default()
	if p.Spec.Media.Exposure == v1alpha1.ExposureHostNetwork {
		return nil
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(p, MediaServiceName(p), sfuComponent),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  SelectorLabels(p, sfuComponent),
			Ports: []corev1.ServicePort{{
				Name: MediaPortName, Protocol: corev1.ProtocolUDP, Port: p.Spec.Media.UDPPort, TargetPort: intstr.FromString(MediaPortName),
			}},
		},
	}
}

// TURNService publishes the TURN listeners (UDP, TCP, TLS), or nil when TURN
// is off.
func TURNService(pool *v1alpha1.SFUPool) *corev1.Service {
	p := pool.DeepCopy()
	p.Default()
	if !p.Spec.TURNEnabled() {
		return nil
	}
	var ports []corev1.ServicePort
	for _, l := range p.Spec.TURN.Listeners {
		proto := corev1.ProtocolTCP
		if l.Protocol == v1alpha1.TURNProtocolUDP {
			proto = corev1.ProtocolUDP
		}
		ports = append(ports, corev1.ServicePort{
			Name: l.Name, Protocol: proto, Port: servicePort(l), TargetPort: intstr.FromString("turn-" + l.Name),
		})
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(p, TURNServiceName(p), turnComponent),
		Spec: corev1.ServiceSpec{
			Type:     p.Spec.TURN.ServiceType,
			Selector: SelectorLabels(p, turnComponent),
			Ports:    ports,
		},
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		// TURN checks the client's address (REST credentials, rate limits).
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	return svc
}

// SFUPodDisruptionBudget lets voluntary disruptions (node drains) take one
// SFU pod at a time; each then drains for the pool's drain timeout.
func SFUPodDisruptionBudget(pool *v1alpha1.SFUPool) *policyv1.PodDisruptionBudget {
	p := pool.DeepCopy()
	p.Default()
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: objectMeta(p, SFUName(p), sfuComponent),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: SelectorLabels(p, sfuComponent)},
		},
	}
}

// SFUAutoscaler scales the SFU StatefulSet on CPU, or nil without
// spec.autoscaling or when the operator scales on load (mode Load).
func SFUAutoscaler(pool *v1alpha1.SFUPool) *autoscalingv2.HorizontalPodAutoscaler {
	p := pool.DeepCopy()
	p.Default()
	a := p.Spec.Autoscaling
	if a == nil || a.LoadDriven() {
		return nil
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: objectMeta(p, SFUName(p), sfuComponent),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: SFUName(p)},
			MinReplicas:    ptr.To(a.MinReplicas),
			MaxReplicas:    a.MaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(a.TargetCPUUtilizationPercentage)},
				},
			}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				// Scaling down drains pods for minutes; do it slowly.
				ScaleDown: &autoscalingv2.HPAScalingRules{
					StabilizationWindowSeconds: ptr.To(int32(600)),
					Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 300}},
				},
			},
		},
	}
}

// downwardEnv gives pods their identity and addresses.
func downwardEnv() []corev1.EnvVar {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	return []corev1.EnvVar{
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("POD_IP", "status.podIP"),
		field("NODE_IP", "status.hostIP"),
		field("NODE_NAME", "spec.nodeName"),
	}
}

func probe(path string, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString(HTTPPortName), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    5,
		TimeoutSeconds:   2,
		FailureThreshold: failures,
		SuccessThreshold: 1,
	}
}

// containerSecurityContext is Pod Security "restricted".
func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(RunAsID),
		RunAsGroup:               ptr.To(RunAsID),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func podSpec(p *v1alpha1.SFUPool, c corev1.Container, component string) corev1.PodSpec {
	sch := p.Spec.Scheduling
	return corev1.PodSpec{
		ServiceAccountName:           ServiceAccountName(p),
		AutomountServiceAccountToken: ptr.To(false),
		EnableServiceLinks:           ptr.To(false),
		Containers:                   []corev1.Container{c},
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To(RunAsID),
			RunAsGroup:     ptr.To(RunAsID),
			FSGroup:        ptr.To(RunAsID),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Volumes: []corev1.Volume{
			{Name: configVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: ConfigSecretName(p), DefaultMode: ptr.To(int32(0o440)),
			}}},
			{Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("64Mi"))}}},
		},
		NodeSelector:      sch.NodeSelector,
		Tolerations:       sch.Tolerations,
		Affinity:          sch.Affinity.DeepCopy(),
		PriorityClassName: sch.PriorityClassName,
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       corev1.LabelHostname,
			WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: SelectorLabels(p, component)},
		}},
	}
}

// withOnePerNode adds a required pod anti-affinity on the node: two
// HostNetwork SFU pods on one node would fight over the UDP port.
func withOnePerNode(a *corev1.Affinity, sel map[string]string) *corev1.Affinity {
	if a == nil {
		a = &corev1.Affinity{}
	}
	if a.PodAntiAffinity == nil {
		a.PodAntiAffinity = &corev1.PodAntiAffinity{}
	}
	a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
		corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: sel}, TopologyKey: corev1.LabelHostname})
	return a
}

// resourcesOrDefault returns r, or requests of cpu and memory and a memory
// limit when r is empty. No CPU limit: throttling a media server adds jitter.
func resourcesOrDefault(r corev1.ResourceRequirements, cpu, mem, memLimit string) corev1.ResourceRequirements {
	if len(r.Requests) > 0 || len(r.Limits) > 0 || len(r.Claims) > 0 {
		return *r.DeepCopy()
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memLimit)},
	}
}

// Children are every object the pool should own, in apply order (the
// Secret and ServiceAccount before the workloads that mount and use them).
// Optional children that the spec turns off are absent; Optional lists
// their kinds so the controller can delete leftovers.
func Children(pool *v1alpha1.SFUPool, pod config.Pod) ([]Child, error) {
	secret, err := ConfigSecret(pool, pod)
	if err != nil {
		return nil, fmt.Errorf("render children of %s: %w", pod.Pool, err)
	}
	out := []Child{
		{Object: ServiceAccount(pool)},
		{Object: secret},
		{Object: InternalService(pool)},
		{Object: APIService(pool)},
		{Object: SFUPodDisruptionBudget(pool)},
		{Object: SFUStatefulSet(pool, SFURestartHash(pod))},
	}
	if m := MediaService(pool); m != nil {
		out = append(out, Child{Object: m})
	} else {
		out = append(out, Child{Absent: &corev1.Service{ObjectMeta: objectMeta(pool, MediaServiceName(pool), sfuComponent)}})
	}
	if h := SFUAutoscaler(pool); h != nil {
		out = append(out, Child{Object: h})
	} else {
		out = append(out, Child{Absent: &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: objectMeta(pool, SFUName(pool), sfuComponent)}})
	}
	if d := TURNDeployment(pool, TURNRestartHash(pod)); d != nil {
		out = append(out, Child{Object: d}, Child{Object: TURNService(pool)})
	} else {
		out = append(out,
			Child{Absent: &appsv1.Deployment{ObjectMeta: objectMeta(pool, TURNName(pool), turnComponent)}},
			Child{Absent: &corev1.Service{ObjectMeta: objectMeta(pool, TURNServiceName(pool), turnComponent)}})
	}
	return out, nil
}
