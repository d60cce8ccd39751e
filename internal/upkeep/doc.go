// Package upkeep keeps the repository and the cluster tidy between runs,
// for the command line and the agent alike: it prunes after a Completed
// backup, deletes the VolumeSnapshots that deleted backups kept, and
// collects the garbage of crashed runs (backups without a manifest, shared
// data no backup references, and the cluster objects of runs that ended
// long ago). It sits above the catalog, retention and the cluster helpers
// of internal/kube, below the commands.
package upkeep
