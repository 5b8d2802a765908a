// Package index registers the cache field indexes the controllers share and
// names them. It imports the API types and controller-runtime only.
package index
