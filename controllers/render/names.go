package render

import "github.com/switchboard-rtc/switchboard/api/v1alpha1"

// Names of a pool's children. They derive from the pool's name only, so a
// renamed field never orphans a child.

// ConfigSecretName is the Secret holding the rendered pod configuration.
func ConfigSecretName(p *v1alpha1.SFUPool) string { return p.Name + "-config" }

// ServiceAccountName is the pods' ServiceAccount (no API access).
func ServiceAccountName(p *v1alpha1.SFUPool) string { return p.Name + "-switchboard" }

// SFUName names the SFU StatefulSet, its PodDisruptionBudget and its
// HorizontalPodAutoscaler.
func SFUName(p *v1alpha1.SFUPool) string { return p.Name + "-sfu" }

// InternalServiceName is the headless Service that gives each SFU pod a
// stable DNS name: <pod>.<pool>-sfu-internal.<namespace>.svc.
func InternalServiceName(p *v1alpha1.SFUPool) string { return p.Name + "-sfu-internal" }

// APIServiceName is the session API Service.
func APIServiceName(p *v1alpha1.SFUPool) string { return p.Name + "-api" }

// MediaServiceName is the headless Service listing SFU media addresses
// (Direct and TURNIngress exposure).
func MediaServiceName(p *v1alpha1.SFUPool) string { return p.Name + "-media" }

// TURNName names the TURN Deployment and its Service.
func TURNName(p *v1alpha1.SFUPool) string { return p.Name + "-turn" }

// TURNServiceName is the TURN Service clients connect to.
func TURNServiceName(p *v1alpha1.SFUPool) string { return TURNName(p) }

// CredentialsSecretName is a CallsApp's credentials Secret.
func CredentialsSecretName(a *v1alpha1.CallsApp) string { return a.Name + "-credentials" }

// FleetSecretName is the Secret holding the pool's fleet token, generated
// once and kept across reconciles and manager restarts.
func FleetSecretName(p *v1alpha1.SFUPool) string { return p.Name + "-fleet" }
