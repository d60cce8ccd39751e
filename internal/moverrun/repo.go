package moverrun

import (
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/uploader"
)

// CheckRepo checks that mover pods can reach the repository at repoURL: it
// must be an s3:// URL. A file:// repository lies on the disk of the
// machine that names it, which no pod sees; it serves kbak list, describe
// and the mover itself, not a run in a cluster. Errors about the URL wrap
// uploader.ErrBadURL.
func CheckRepo(repoURL string) error {
	loc, err := uploader.ParseURL(repoURL)
	if err != nil {
		return err
	}
	if loc.Scheme != "s3" {
		return hint.Errorf("repository %s is on this machine's disk, which mover pods in the cluster cannot reach: use an S3 bucket (%s); a file:// repository serves kbak list, describe and mover only",
			loc, hint.Set(hint.Repo, "s3://BUCKET/PREFIX"))
	}
	return nil
}
