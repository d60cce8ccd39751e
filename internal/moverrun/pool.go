package moverrun

import (
	"context"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Pool runs the per-volume work of one run, at most a fixed number of pieces
// at once. Pools made with Share count against one limit but each waits
// only for its own work.
type Pool struct {
	limit *errgroup.Group // shared by every pool of the run
	own   sync.WaitGroup
}

// NewPool returns a pool that runs at most limit pieces of work at once.
func NewPool(limit int) *Pool {
	g := &errgroup.Group{}
	g.SetLimit(max(limit, 1))
	return &Pool{limit: g}
}

// Share returns a pool under p's limit that waits only for the work given
// to it, for a part of the run that must end before the rest.
func (p *Pool) Share() *Pool { return &Pool{limit: p.limit} }

// Go runs work in a goroutine of its own as soon as the limit allows, and
// stores its error in *errp; Go waits until then. Work whose ctx has ended
// by the time its turn comes does not start: *errp gets ctx's cause.
func (p *Pool) Go(ctx context.Context, errp *error, work func(context.Context) error) {
	p.own.Add(1)
	p.limit.Go(func() error {
		defer p.own.Done()
		if ctx.Err() != nil {
			*errp = context.Cause(ctx)
			return nil
		}
		*errp = work(ctx)
		return nil
	})
}

// Wait waits until every piece of work given to this pool has ended.
func (p *Pool) Wait() { p.own.Wait() }
