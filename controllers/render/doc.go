// Package render turns SFUPool and CallsApp objects into what the cluster and
// the pods need: the pod configuration (sfu/config.Pod) and the child
// objects of a pool (StatefulSet, Deployment, Services, Secret, PDB,
// ServiceAccount, HorizontalPodAutoscaler).
//
// Every function here is pure: the same input gives the same output, with no
// client, clock or randomness (credential generation takes its random source
// as an argument). Inputs are defaulted with the v1alpha1 Default methods
// first, so an object read straight from a file renders like one that went
// through the API server; this is what lets `switchboard dev` share App and
// PodConfig with the operator.
//
// It imports api/v1alpha1, sfu/config and Kubernetes API types; it must not
// import controller-runtime clients, the controllers or the media core.
package render
