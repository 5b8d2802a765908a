// Package tools is the tool module of the local cluster (hack/cluster). It
// holds three commands and nothing importable:
//
//   - imgpack packs static binaries into a docker-save image tarball (generic);
//   - pause is the pod sandbox image's process;
//   - hello is the smoke test's HTTP workload.
//
// It is a module of its own so go-containerregistry stays out of the main
// module's go.mod. It must not import the switchboard module.
package tools
