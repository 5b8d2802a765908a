// Package sfupool reconciles SFUPool objects: it renders the pool's pod
// configuration from the pool and every CallsApp that names it, writes the
// pool's children (config Secret, ServiceAccount, Services, PDB, SFU
// StatefulSet, TURN Deployment, autoscaler) with Server-Side Apply, and
// reports pods (with their drain state from the hub's pod reports),
// endpoints and the conditions Ready, Progressing and Degraded. It keeps
// each pool's fleet token in a Secret, and scales load-driven pools
// (spec.autoscaling.mode Load) with controllers/autoscale.
//
// Files follow cluster-api: sfupool_controller.go (Reconcile, watches),
// sfupool_phases.go (one write each), scale.go (the scale decision),
// sfupool_status.go (status and conditions), events.go (Events on
// transitions). It imports the API types, controllers/render,
// controllers/apply, controllers/index, controllers/keys,
// controllers/autoscale and the hub's pod view (hub.PodStatus); never
// controllers/callsapp or the media core.
package sfupool
