// Package kube holds the Kubernetes pieces several commands share: clients
// from a kubeconfig, StatefulSet claim discovery, VolumeSnapshot helpers and
// waits, and label conventions for everything kbak creates.
package kube
