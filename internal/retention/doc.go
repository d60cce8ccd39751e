// Package retention sits beside the catalog: it decides which backups a
// policy keeps (Policy.Apply, a pure function of the backups and their
// times) and prunes a catalog by it, deleting what the policy no longer
// keeps and freeing the repository's shared data. `kbak prune`, `kbak
// backup --prune` and the scheduled runs all prune through it.
package retention
