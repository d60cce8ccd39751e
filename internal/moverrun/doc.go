// Package moverrun is what a backup run and a restore run (and with it a
// test restore) share to drive their mover pods, between the orchestration
// in backup and restore and the cluster helpers of internal/kube: the
// credentials Secret the movers read (made for the run from the caller's
// credentials, or a named one checked), the Launcher that runs one mover pod
// to its end within its deadlines and hands its progress on one event at a
// time, and the Pool that runs the per-volume work of a run, a bounded
// number at once.
package moverrun
