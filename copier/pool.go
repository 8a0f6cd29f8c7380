package copier

import (
	"context"
	"io/fs"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// poolThreshold is how many regular files a copy handles itself before it
// starts the pool: small copies do not pay for goroutines.
const poolThreshold = 64

// defaultWorkers is the pool size: the CPUs Go may use, at most 4 (the work
// is syscalls on one filesystem; more workers only contend).
func defaultWorkers() int {
	return min(runtime.GOMAXPROCS(0), 4)
}

// chunkFiles is how many consecutive files of one directory go to the same
// worker: creating entries in one directory serialises on its lock in the
// kernel, so workers do better in different directories.
const chunkFiles = 32

// fileJob is one regular file of a tree walk to write. seq is its place in
// walk order, which decides which error wins; dir counts the jobs of its
// destination directory still to do.
type fileJob struct {
	seq      uint64
	src, dst string
	info     fs.FileInfo
	dir      *dirJobs
}

// dirJobs counts the pool jobs of one destination directory not yet done.
type dirJobs struct{ n atomic.Int64 }

// deferredDir is a directory whose metadata waits for its files' jobs.
type deferredDir struct {
	seq      uint64
	src, dst string
	info     fs.FileInfo
	jobs     *dirJobs
}

// pool writes regular files (ones that are not hard links, so that no
// other entry depends on them) on a few goroutines while the walk goes on.
// The caller drains it before anything that could touch a path a job may
// be writing; errors are kept by walk order, so the one returned is the one
// a sequential copy would have stopped at.
type pool struct {
	jobs    []chan fileJob // one queue per worker, in walk order
	workers sync.WaitGroup // running workers
	pending sync.WaitGroup // jobs submitted and not yet done
	seq     uint64         // last walk position handed out (caller only)
	next    int            // worker the current chunk goes to (caller only)
	chunk   int            // files in the current chunk (caller only)
	last    *dirJobs       // directory of the current chunk (caller only)

	mu      sync.Mutex
	errSeq  uint64 // walk position of the earliest failure, 0 for none
	err     error
	running []uint64             // per worker: seq of its current job, 0 when idle
	cancels []context.CancelFunc // per worker: stops its current job
}

func (w *writer) startPool(ctx context.Context) *pool {
	p := &pool{
		jobs:    make([]chan fileJob, w.workers),
		running: make([]uint64, w.workers),
		cancels: make([]context.CancelFunc, w.workers),
	}
	for i := range w.workers {
		p.jobs[i] = make(chan fileJob, 2*chunkFiles)
		wctx, cancel := context.WithCancel(ctx)
		p.cancels[i] = cancel
		p.workers.Add(1)
		go p.work(wctx, w, i)
	}
	return p
}

func (p *pool) work(ctx context.Context, w *writer, i int) {
	defer p.workers.Done()
	defer p.cancels[i]()
	var bufs cmpBufs
	for j := range p.jobs[i] {
		p.mu.Lock()
		// Jobs after a failure are skipped: a sequential copy would
		// have stopped before them.
		skip := p.errSeq != 0 && j.seq > p.errSeq
		if !skip {
			p.running[i] = j.seq
		}
		p.mu.Unlock()
		if !skip {
			err := w.nonDir(ctx, &bufs, j.src, j.info, j.dst)
			p.mu.Lock()
			p.running[i] = 0
			p.mu.Unlock()
			if err != nil {
				p.fail(j.seq, err)
			}
		}
		j.dir.n.Add(-1)
		p.pending.Done()
	}
}

// fail records err at walk position seq unless an earlier one failed, and
// stops the jobs that come after it; earlier ones finish, as they would
// have sequentially.
func (p *pool) fail(seq uint64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.errSeq != 0 && p.errSeq < seq {
		return
	}
	p.errSeq, p.err = seq, err
	for k, s := range p.running {
		if s > seq {
			p.cancels[k]()
		}
	}
}

// submit queues a file of directory dir; it blocks while that worker's
// queue is full. A queue's jobs are in walk order, so a worker whose job
// was canceled only meets later ones, which it skips.
func (p *pool) submit(src string, info fs.FileInfo, dst string, dir *dirJobs) {
	if dir != p.last || p.chunk == chunkFiles {
		p.next = (p.next + 1) % len(p.jobs)
		p.last, p.chunk = dir, 0
	}
	p.chunk++
	p.seq++
	dir.n.Add(1)
	p.pending.Add(1)
	p.jobs[p.next] <- fileJob{seq: p.seq, src: src, info: info, dst: dst, dir: dir}
}

// failed returns the earliest error so far, if any.
func (p *pool) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// failedAt is the walk position of the earliest error, 0 for none.
func (p *pool) failedAt() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errSeq
}

// drain waits for every submitted job and returns the earliest error.
func (p *pool) drain() error {
	p.pending.Wait()
	return p.failed()
}

// stop ends the workers; no job may be submitted after.
func (p *pool) stop() {
	for _, c := range p.jobs {
		close(c)
	}
	p.workers.Wait()
}

// poolErr is the earliest error so far (waiting for the running jobs once
// there is one, since an earlier job may still fail).
func (w *writer) poolErr() error {
	if w.pool == nil {
		return nil
	}
	if err := w.pool.failed(); err != nil {
		return w.pool.drain()
	}
	return nil
}

// leaveDir sets a left directory's metadata once its files are written:
// now when nothing of it is queued, else later, still in walk order.
func (w *writer) leaveDir(src string, info fs.FileInfo, dst string, jobs *dirJobs) error {
	if w.pool == nil {
		return w.meta(src, info, dst)
	}
	w.pool.seq++
	w.deferred = append(w.deferred, deferredDir{seq: w.pool.seq, src: src, dst: dst, info: info, jobs: jobs})
	return w.runDeferred(false)
}

// runDeferred sets the metadata of deferred directories, in walk order,
// while their jobs are done (all of them when all, after a drain). A
// failure counts at the directory's walk position.
func (w *writer) runDeferred(all bool) error {
	for len(w.deferred) > 0 {
		d := w.deferred[0]
		if !all && d.jobs.n.Load() != 0 {
			return nil
		}
		if seq := w.pool.failedAt(); seq != 0 && seq < d.seq {
			break // a sequential copy stopped before this directory
		}
		w.deferred = w.deferred[1:]
		if err := w.meta(d.src, d.info, d.dst); err != nil {
			w.pool.fail(d.seq, err)
			return w.pool.drain()
		}
	}
	return nil
}

// settle waits for the pool's jobs and the deferred directories; err is
// the walk's own error. The earliest failure in walk order wins.
func (w *writer) settle(err error) error {
	if w.pool == nil {
		return err
	}
	w.pool.drain()
	w.runDeferred(true)
	w.deferred = w.deferred[:0]
	if perr := w.pool.failed(); perr != nil {
		return perr
	}
	return err
}

// stopPool ends the pool's goroutines (before Copy returns).
func (w *writer) stopPool() {
	if w.pool != nil {
		w.pool.stop()
		w.pool = nil
	}
}

// parallel reports whether the tree entry info goes to the pool, starting
// it once the copy has seen poolThreshold such files.
func (w *writer) parallel(ctx context.Context, info fs.FileInfo) bool {
	if w.workers <= 0 || !info.Mode().IsRegular() {
		return false
	}
	// A hard-linked source's first destination must exist before the
	// others link to it: those stay in walk order.
	if info.Sys().(*syscall.Stat_t).Nlink > 1 {
		return false
	}
	if w.pool == nil {
		w.treeFiles++
		if w.treeFiles <= poolThreshold {
			return false
		}
		w.pool = w.startPool(ctx)
	}
	return true
}
