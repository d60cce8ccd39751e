// Package kube holds the cluster-side helpers that backup, restore, gc and
// doctor share, below them in the pipeline and above client-go: a
// StatefulSet's claims (Discover), VolumeSnapshots and the claims made from
// them, pods (create, wait, logs, exec, delete), the request timeout every
// API call gets, deleting a run's objects and finding the stale runs `kbak
// gc` removes, and the label vocabulary of everything kbak creates
// (labels.go, its one owner). Clients are built by cmd/kbak; what runs a
// mover pod is internal/moverrun.
package kube
