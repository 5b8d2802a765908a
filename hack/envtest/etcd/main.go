// Command etcd is the etcd server, built from source for envtest.
// hack/envtest/build.sh builds it with the etcd version Kubernetes pins.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
