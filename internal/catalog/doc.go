// Package catalog owns the repository layout (the one type that derives every
// object key) and the backup manifest, and reads and edits the set of backups
// in a store: list, describe, delete, garbage collection.
package catalog
