// Package restore orchestrates one restore run: read the manifest, plan the
// target PVCs per ordinal (NewPlan: names, classes, sizes, sources and
// conflicts, creating nothing), create them (from a kept VolumeSnapshot or
// empty and filled by a mover pod) and optionally re-create the StatefulSet
// (Run). `kbak verify` reads a backup back through CheckBackup, writing
// nothing, and VerifyRestore runs the restore path into a scratch namespace
// to prove a backup restores.
package restore
