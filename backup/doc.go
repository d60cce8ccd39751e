// Package backup orchestrates one backup run of a StatefulSet: discover its
// claims, optionally quiesce, cut VolumeSnapshots (or pick the live volumes),
// start one mover pod per volume, collect the movers' results and write the
// manifest last.
package backup
