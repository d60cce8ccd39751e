// Package backup orchestrates one backup run of a StatefulSet: discover its
// claims, optionally quiesce, cut VolumeSnapshots (or pick the live volumes),
// start one mover pod per volume, collect the movers' results and write the
// manifest last.
//
// Outcomes: a manifest is written only when at least one volume was backed
// up (status Completed or PartiallyFailed). A run in which no volume was
// backed up, or that was interrupted, writes no manifest and deletes what it
// uploaded. Every cluster object a run creates carries kbak's labels and is
// deleted before Run returns (pods before the claims they mount); only
// VolumeSnapshots kept with KeepSnapshots stay, labelled kbak.io/retained and
// recorded as retained in the manifest. What a crashed run left is
// internal/upkeep's to collect (`kbak gc`).
package backup
