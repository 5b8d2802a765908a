// Package sfupool reconciles SFUPool objects: it renders the pool's pod
// configuration from the pool and every CallsApp that names it, writes the
// pool's children (config Secret, ServiceAccount, Services, PDB, SFU
// StatefulSet, TURN Deployment, autoscaler) with Server-Side Apply, and
// reports pods, endpoints and the conditions Ready, Progressing and Degraded.
//
// Files follow cluster-api: sfupool_controller.go (Reconcile, watches),
// sfupool_phases.go (one write each), sfupool_status.go (status and
// conditions). It imports the API types, controllers/render,
// controllers/apply and controllers/index; never controllers/callsapp or
// the media core.
package sfupool
