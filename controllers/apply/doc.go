// Package apply writes a controller's child objects with Server-Side Apply
// under one field manager, and only when the apply would change something:
// it asks the API server for a dry-run first and compares the result with
// the object it has, so a reconcile with nothing new writes nothing.
// Status writes a resource's own status the one way every controller
// here does: a merge patch under the optimistic lock.
//
// It imports controller-runtime clients and controllers/render (for the
// apply form of an object); it must not import the controllers themselves.
package apply
