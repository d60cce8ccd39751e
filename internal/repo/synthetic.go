package repo

import (
	"context"
	"crypto/rand"
	"fmt"
)

// SyntheticIndex adds to the index n chunks that exist nowhere else, spread
// over packs of the repository's pack size as 1 MiB chunks would be. It
// lets a test measure what a repository of n MiB of unique data costs a
// writer or a reader in memory, without storing the data; such a
// repository must not be restored from.
func (r *Repo) SyntheticIndex(ctx context.Context, n int) error {
	perPack := max(int(r.cfg.PackSize>>20), 1)
	var batch []packEntries
	for done := 0; done < n; {
		id, err := newPackID()
		if err != nil {
			return err
		}
		pe := packEntries{pack: id}
		for i := 0; i < perPack && done < n; i++ {
			var e Entry
			if _, err := rand.Read(e.ID[:]); err != nil {
				return err
			}
			e.Pack, e.Offset, e.Length, e.RawLength = id, uint32(i<<20), 1<<19, 1<<20
			pe.entries = append(pe.entries, e)
			done++
		}
		batch = append(batch, pe)
		if len(batch) == 4096 || done == n {
			if err := r.putIndex(ctx, r.store, batch); err != nil {
				return fmt.Errorf("synthetic index: %w", err)
			}
			batch = nil
		}
	}
	return nil
}
