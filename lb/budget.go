package lb

import (
	"sync"
	"sync/atomic"
	"time"
)

// retryBudget caps retries at a share of requests, so a failing backend
// cannot multiply the load on the others (a retry storm). Every request
// deposits budget_ratio of a token; every retry withdraws one. A time-based
// allowance of min_retries_per_second keeps retries possible in a quiet
// pool. Tokens are counted in thousandths.
type retryBudget struct {
	now func() time.Time

	ratio     atomic.Int64 // milli-tokens deposited per request
	perSecond atomic.Int64 // milli-tokens added per second
	limit     atomic.Int64 // cap on tokens
	tokens    atomic.Int64

	// mu guards last, the time of the latest time-based refill.
	mu   sync.Mutex
	last time.Time
}

// budgetWindow is how many seconds of deposits the budget can bank.
const budgetWindow = 10

func newRetryBudget(now func() time.Time) *retryBudget {
	return &retryBudget{now: now, last: now()}
}

func (b *retryBudget) configure(c RetryConfig) {
	b.ratio.Store(int64(c.BudgetRatio * 1000))
	b.perSecond.Store(int64(c.MinRetriesPerSecond) * 1000)
	limit := max(int64(c.MinRetriesPerSecond)*1000*budgetWindow, 100*1000)
	if b.limit.Swap(limit) == 0 {
		// First configuration: start with a second's allowance.
		b.tokens.Store(b.perSecond.Load())
	}
}

// deposit is called once per request.
func (b *retryBudget) deposit() {
	if b.tokens.Add(b.ratio.Load()) > b.limit.Load() {
		b.tokens.Store(b.limit.Load())
	}
}

// withdraw takes one retry token, reporting whether the retry may go.
func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	now := b.now()
	if elapsed := now.Sub(b.last); elapsed > 0 {
		add := int64(elapsed.Seconds() * float64(b.perSecond.Load()))
		if add > 0 {
			b.last = now
			if b.tokens.Add(add) > b.limit.Load() {
				b.tokens.Store(b.limit.Load())
			}
		}
	}
	b.mu.Unlock()
	for {
		t := b.tokens.Load()
		if t < 1000 {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-1000) {
			return true
		}
	}
}
