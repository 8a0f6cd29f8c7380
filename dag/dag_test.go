package dag

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOrder(t *testing.T) {
	tests := []struct {
		name  string
		edges map[string][]string
		want  map[string][]string // node -> nodes that must come before it
		cycle bool
	}{
		{name: "chain", edges: map[string][]string{"c": {"b"}, "b": {"a"}, "a": nil},
			want: map[string][]string{"c": {"a", "b"}, "b": {"a"}}},
		{name: "diamond", edges: map[string][]string{"d": {"b", "c"}, "b": {"a"}, "c": {"a"}, "a": nil},
			want: map[string][]string{"d": {"a", "b", "c"}, "b": {"a"}, "c": {"a"}}},
		{name: "unknown dep ignored", edges: map[string][]string{"a": {"zz"}}, want: map[string][]string{}},
		{name: "cycle", edges: map[string][]string{"a": {"b"}, "b": {"a"}}, cycle: true},
		{name: "self cycle", edges: map[string][]string{"a": {"a"}}, cycle: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g Graph[string]
			for n, d := range tt.edges {
				g.Add(n, d...)
			}
			order, err := g.Order()
			if tt.cycle {
				if err == nil {
					t.Fatalf("want cycle error, got order %v", order)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(order) != len(tt.edges) {
				t.Fatalf("order %v has %d nodes, want %d", order, len(order), len(tt.edges))
			}
			pos := map[string]int{}
			for i, n := range order {
				pos[n] = i
			}
			for n, before := range tt.want {
				for _, b := range before {
					if pos[b] >= pos[n] {
						t.Errorf("%s at %d should come after %s at %d (order %v)", n, pos[n], b, pos[b], order)
					}
				}
			}
		})
	}
}

func TestRunRespectsDependencies(t *testing.T) {
	var g Graph[string]
	g.Add("final", "a", "b", "c")
	g.Add("a", "base")
	g.Add("b", "base")
	g.Add("c")
	g.Add("base")
	var mu sync.Mutex
	finished := map[string]bool{}
	err := g.Run(context.Background(), 4, func(ctx context.Context, n string) error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range g.deps[n] {
			if !finished[d] {
				t.Errorf("%s started before its dependency %s finished", n, d)
			}
		}
		finished[n] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(finished) != 5 {
		t.Fatalf("ran %d nodes, want 5", len(finished))
	}
}

func TestRunIsParallelUpToLimit(t *testing.T) {
	for _, limit := range []int{1, 2, 3} {
		var g Graph[int]
		for i := 0; i < 6; i++ {
			g.Add(i)
		}
		var running, peak atomic.Int32
		err := g.Run(context.Background(), limit, func(ctx context.Context, n int) error {
			now := running.Add(1)
			for {
				p := peak.Load()
				if now <= p || peak.CompareAndSwap(p, now) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := peak.Load(); got != int32(limit) {
			t.Errorf("limit %d: peak concurrency %d", limit, got)
		}
	}
}

func TestRunFirstFailureCancelsOthers(t *testing.T) {
	var g Graph[string]
	g.Add("slow")
	g.Add("bad")
	g.Add("after-bad", "bad")
	boom := errors.New("boom")
	var afterRan atomic.Bool
	var slowCancelled atomic.Bool
	err := g.Run(context.Background(), 2, func(ctx context.Context, n string) error {
		switch n {
		case "bad":
			return boom
		case "after-bad":
			afterRan.Store(true)
		case "slow":
			select {
			case <-ctx.Done():
				slowCancelled.Store(true)
				return ctx.Err()
			case <-time.After(5 * time.Second):
			}
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if afterRan.Load() {
		t.Error("a dependent of the failed node ran")
	}
	if !slowCancelled.Load() {
		t.Error("the running node was not cancelled")
	}
}
