// Package restore orchestrates one restore run: read the manifest, plan the
// target PVCs per ordinal, create them (from a kept VolumeSnapshot or empty and
// filled by a mover pod) and optionally re-create the StatefulSet.
package restore
