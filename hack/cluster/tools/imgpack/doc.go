// Command imgpack packs local files (typically one static binary) into a
// single-layer image built from scratch and writes it as a docker-save
// tarball, which `ctr images import` and `docker load` accept. No registry
// and no container engine are involved.
//
// Usage:
//
//	imgpack -tag local.test/hello:v1 -out hello.tar -file bin/hello:/hello [-file SRC:DST[:MODE]]... [-entrypoint /hello] [-env K=V]... [-user 65532]
//
// The layer also holds /tmp (mode 1777) and an /etc/passwd and /etc/group
// naming root and nobody, so images run under runAsNonRoot. Every entry has a
// fixed modification time, so packing the same files twice yields the same
// image digest and a re-import is a no-op.
//
// imgpack is generic: nothing in it is specific to the local cluster.
//
// It must not import anything from the switchboard module.
package main
