// Package dag holds a graph of work items and runs it: every item starts as
// soon as the items it depends on have finished, with at most a fixed number
// running at once. The first failure cancels the rest.
package dag

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// Graph is a set of nodes with dependency edges. The zero value is empty and
// ready to use. Nodes are compared with ==.
type Graph[T comparable] struct {
	nodes []T
	deps  map[T][]T
}

// Add adds n, which depends on deps. Adding a node twice merges its deps.
// Dependencies that are never added themselves count as already done.
func (g *Graph[T]) Add(n T, deps ...T) {
	if g.deps == nil {
		g.deps = map[T][]T{}
	}
	if _, ok := g.deps[n]; !ok {
		g.nodes = append(g.nodes, n)
		g.deps[n] = nil
	}
	g.deps[n] = append(g.deps[n], deps...)
}

// Len reports the number of nodes.
func (g *Graph[T]) Len() int { return len(g.nodes) }

// Order returns the nodes in an order where each comes after its
// dependencies, or an error naming a node on a cycle.
func (g *Graph[T]) Order() ([]T, error) {
	const (
		unseen = iota
		visiting
		done
	)
	state := map[T]int{}
	var out []T
	var visit func(n T) error
	visit = func(n T) error {
		switch state[n] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle at %v", n)
		}
		state[n] = visiting
		for _, d := range g.deps[n] {
			if _, ok := g.deps[d]; !ok {
				continue
			}
			if err := visit(d); err != nil {
				return err
			}
		}
		state[n] = done
		out = append(out, n)
		return nil
	}
	for _, n := range g.nodes {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Run calls fn for every node, each after all of its dependencies returned
// nil, with at most limit calls at once (limit < 1 means 1). The first error
// cancels the context given to the other calls; Run waits for every started
// call before it returns that error.
func (g *Graph[T]) Run(ctx context.Context, limit int, fn func(ctx context.Context, n T) error) error {
	order, err := g.Order()
	if err != nil {
		return err
	}
	if limit < 1 {
		limit = 1
	}
	pending := map[T]int{}
	dependents := map[T][]T{}
	for _, n := range order {
		for _, d := range uniq(g.deps[n]) {
			if _, ok := g.deps[d]; !ok {
				continue
			}
			pending[n]++
			dependents[d] = append(dependents[d], n)
		}
	}

	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(limit)
	// Buffered for every node so a finishing call never blocks on the loop.
	finished := make(chan T, len(order))
	start := func(n T) {
		eg.Go(func() error {
			if err := fn(ctx, n); err != nil {
				return err
			}
			finished <- n
			return nil
		})
	}
	var ready []T
	for _, n := range order {
		if pending[n] == 0 {
			ready = append(ready, n)
		}
	}
	remaining := len(order)
	for remaining > 0 {
		for _, n := range ready {
			start(n)
		}
		ready = ready[:0]
		select {
		case n := <-finished:
			remaining--
			for _, m := range dependents[n] {
				pending[m]--
				if pending[m] == 0 {
					ready = append(ready, m)
				}
			}
		case <-ctx.Done():
			return waitErr(eg, ctx)
		}
	}
	return eg.Wait()
}

func waitErr(eg *errgroup.Group, ctx context.Context) error {
	if err := eg.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

func uniq[T comparable](in []T) []T {
	seen := make(map[T]bool, len(in))
	out := in[:0:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
