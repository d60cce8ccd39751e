package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kbak/kbak/uploader"
)

// Locks keep prune from removing chunks that a running backup is about to
// reference: a backup holds a shared lock, prune an exclusive one, and
// neither starts while the other's lock is fresh. Each side writes its lock
// first and then lists the others, so with a store that lists what was
// written (S3 is strongly consistent) at least one of two racing sides sees
// the other and backs off. A lock is refreshed while held; one not
// refreshed for LockStale (its holder died) is ignored, and gc removes it.
// Lock objects are small and their removal needs no delete right beyond
// the lock's own. They are rewritten and removed all the time, so they are
// written without Object Lock retention whatever the store's (r.plain): a
// writer whose credentials may not delete (an append-only schedule)
// leaves its lock behind, stale after LockStale, unless it may delete
// under locks/.
const (
	LockStale   = 30 * time.Minute
	lockRefresh = 5 * time.Minute
)

// Lock kinds.
const (
	LockShared    = "shared"    // backups
	LockExclusive = "exclusive" // prune
)

// ErrLocked is wrapped by Lock errors when a conflicting lock is held.
var ErrLocked = errors.New("repository is locked")

// Lock is a held lock; Unlock releases it.
type Lock struct {
	r    *Repo
	key  string
	body []byte
	stop chan struct{}
	wg   sync.WaitGroup
}

type lockInfo struct {
	Kind    string    `json:"kind"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Purpose string    `json:"purpose,omitempty"`
	Created time.Time `json:"created"`
}

// Lock takes a lock of kind for purpose (said to whoever finds it), or
// returns an error wrapping ErrLocked that names the holder.
func (r *Repo) Lock(ctx context.Context, kind, purpose string) (*Lock, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	body, err := json.Marshal(lockInfo{Kind: kind, Host: host, PID: os.Getpid(), Purpose: purpose, Created: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	l := &Lock{r: r, key: Keys.Lock(kind + "-" + hex.EncodeToString(rnd[:])), body: body, stop: make(chan struct{})}
	if err := l.write(ctx); err != nil {
		return nil, err
	}
	if err := r.conflicts(ctx, l.key, kind); err != nil {
		l.release(ctx)
		return nil, err
	}
	l.wg.Add(1)
	go l.refresh(ctx)
	return l, nil
}

func (l *Lock) write(ctx context.Context) error {
	if err := l.r.plain.Put(ctx, l.key, bytes.NewReader(l.body), int64(len(l.body))); err != nil {
		return fmt.Errorf("write lock: %w", err)
	}
	return nil
}

// conflicts lists the locks other than own and says who holds one that
// conflicts with kind.
func (r *Repo) conflicts(ctx context.Context, own, kind string) error {
	var holders []string
	now := time.Now()
	err := r.plain.List(ctx, Keys.LockPrefix(), func(oi uploader.ObjectInfo) error {
		if oi.Key == own || now.Sub(oi.ModTime) > LockStale {
			return nil
		}
		other := strings.TrimPrefix(oi.Key, Keys.LockPrefix())
		if kind == LockExclusive || strings.HasPrefix(other, LockExclusive+"-") {
			holders = append(holders, r.describeLock(ctx, oi.Key))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list locks: %w", err)
	}
	if len(holders) > 0 {
		return fmt.Errorf("%w: %s", ErrLocked, strings.Join(holders, "; "))
	}
	return nil
}

func (r *Repo) describeLock(ctx context.Context, key string) string {
	rc, err := r.plain.Get(ctx, key)
	if err != nil {
		return key
	}
	defer rc.Close()
	var li lockInfo
	if json.NewDecoder(rc).Decode(&li) != nil {
		return key
	}
	s := fmt.Sprintf("%s lock of %s (pid %d) since %s", li.Kind, li.Host, li.PID, li.Created.Format(time.RFC3339))
	if li.Purpose != "" {
		s += " for " + li.Purpose
	}
	return s
}

func (l *Lock) refresh(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			// A failed refresh is retried at the next tick; the lock goes
			// stale only after several.
			_ = l.write(context.WithoutCancel(ctx))
		}
	}
}

// Unlock releases the lock, on a context of its own: a cancelled run must
// still let prune go on.
func (l *Lock) Unlock(ctx context.Context) {
	close(l.stop)
	l.wg.Wait()
	l.release(ctx)
}

func (l *Lock) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_ = l.r.plain.Delete(ctx, l.key)
}

// LockWait takes a lock like Lock, retrying every interval while a
// conflicting lock is held, until ctx is done.
func (r *Repo) LockWait(ctx context.Context, kind, purpose string, interval time.Duration) (*Lock, error) {
	for {
		l, err := r.Lock(ctx, kind, purpose)
		if !errors.Is(err, ErrLocked) {
			return l, err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (waited until %v)", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}
