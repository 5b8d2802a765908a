// Package apply writes a controller's child objects with Server-Side Apply
// under one field manager, and only when the apply would change something:
// it asks the API server for a dry-run first and compares the result with
// the object it has, so a reconcile with nothing new writes nothing.
//
// It imports controller-runtime clients and controllers/render (for the
// apply form of an object); it must not import the controllers themselves.
package apply
