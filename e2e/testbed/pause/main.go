// Command pause is the pod sandbox process of the test bed: it holds the
// pod's namespaces open and does nothing until it is asked to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
