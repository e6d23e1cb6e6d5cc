package main

import (
	"context"
	"io"
	"sync"
	"time"
)

// watchdog cancels a download whose body gets no data for `limit`.
type watchdog struct {
	r      io.Reader
	limit  time.Duration
	cancel context.CancelFunc
	timer  *time.Timer
	mu     sync.Mutex
	fire   bool
}

func (w *watchdog) arm() {
	w.timer = time.AfterFunc(w.limit, func() {
		w.mu.Lock()
		w.fire = true
		w.mu.Unlock()
		w.cancel()
	})
}

func (w *watchdog) stop() { w.timer.Stop() }

func (w *watchdog) fired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fire
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.timer.Reset(w.limit)
	}
	return n, err
}
