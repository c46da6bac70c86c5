// Command etcd is the etcd server, built by hack/build-bins.sh from the pinned
// go.etcd.io/etcd/server/v3 module (ETCD_VERSION in hack/versions.env).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
