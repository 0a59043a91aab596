//go:build linux

package master

import (
	"context"
	"sync"
	"time"

	"github.com/preforkd/preforkd/internal/aggregate"
	dto "github.com/prometheus/client_model/go"
)

// maxLinkMsg bounds one succession-link message (a SOCK_SEQPACKET record).
const maxLinkMsg = 64 << 10

// totalsSource is what the link needs of the metrics aggregator.
type totalsSource interface {
	Gather() ([]*dto.MetricFamily, error)
	Totals() *aggregate.Carry
	AddCarry(*aggregate.Carry)
	SetPredecessor(func(context.Context) (*aggregate.Carry, error))
}

// serveSuccessor serves the successor side for the life of the master, in
// a goroutine that close waits for: it passes pid announcements to
// successorPid (calling announced first: from then on only the successor
// serves /metrics, whose totals include ours, so that no scrape sees a
// counter go backwards), answers totals queries with agg's current totals,
// and, when final is closed, sends the final totals and closes finalSent.
func (h *link) serveSuccessor(agg totalsSource, announced func(), final <-chan struct{}, finalSent chan<- struct{}) {
	msgs := make(chan linkMsg)
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		buf := make([]byte, maxLinkMsg)
		for {
			n, err := h.succ.Read(buf)
			if err != nil {
				close(msgs)
				return // closed at the master's exit
			}
			if msg, ok := h.decode(buf[:n]); ok {
				select {
				case msgs <- msg:
				case <-h.quit:
					return
				}
			}
		}
	}()
	go func() {
		defer h.wg.Done()
		for {
			select {
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				h.fromSuccessor(msg, agg, announced)
			case <-final:
				final = nil
				h.sendTotals(agg, "final", 0)
				close(finalSent)
			case <-h.quit:
				return
			}
		}
	}()
}

func (h *link) fromSuccessor(msg linkMsg, agg totalsSource, announced func()) {
	switch msg.Kind {
	case "":
		if msg.PID > 0 {
			announced()
			select {
			case h.pids <- msg:
			default: // nobody waits: a stale attempt
			}
		}
	case "query":
		h.sendTotals(agg, "reply", msg.ID)
	case "fresh":
		agg.Gather() // refresh the workers' snapshots that Totals reads
		h.sendTotals(agg, "reply", msg.ID)
	case "retire":
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			pid, err := h.onRetire()
			if err != nil {
				h.log.Warn("upgrade surge: cannot retire a worker", "err", err)
			} else if pid > 0 {
				h.awaitExit(pid)
			}
			if err := h.send(linkMsg{Attempt: msg.Attempt, Kind: "retired", PID: pid}); err != nil {
				h.log.Warn("upgrade surge: cannot tell the new master", "err", err)
			}
		}()
	case "rollback":
		select {
		case h.rbs <- msg:
		default: // nobody waits: a stale attempt
		}
	default:
		h.log.Warn("unexpected message from the new master ignored", "kind", msg.Kind)
	}
}

// sendTotals sends agg's totals, one slot per message, then a Done message.
func (h *link) sendTotals(agg totalsSource, kind string, id int) {
	for _, c := range agg.Totals().SplitSize(maxLinkMsg - 4<<10) {
		if err := h.send(linkMsg{Kind: kind, ID: id, Carry: c}); err != nil {
			h.log.Warn("cannot send metrics totals to the new master", "err", err)
			return
		}
	}
	if err := h.send(linkMsg{Kind: kind, ID: id, Done: true}); err != nil {
		h.log.Warn("cannot send metrics totals to the new master", "err", err)
	}
}

// predecessor is a new master's side of the link while its predecessor
// runs: scrapes add the predecessor's current totals (query), and its final
// totals become permanent when it is done.
type predecessor struct {
	h       *link
	agg     totalsSource
	qmu     sync.Mutex // one query at a time
	id      int
	replies chan linkMsg
	mu      sync.Mutex
	last    *aggregate.Carry // the last complete reply
}

// followPredecessor reads the predecessor socket until it closes, in a
// goroutine that close waits for. Call once, after receive.
func (h *link) followPredecessor(agg totalsSource) {
	if h.pred == nil {
		return
	}
	p := &predecessor{h: h, agg: agg, replies: make(chan linkMsg, 16)} // replies: one query's pieces
	agg.SetPredecessor(func(ctx context.Context) (*aggregate.Carry, error) { return p.query(ctx, "query") })
	h.predQuery = p.query
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		p.read()
	}()
}

func (p *predecessor) read() {
	final := &aggregate.Carry{}
	gotFinal := false
	buf := make([]byte, maxLinkMsg)
	for !gotFinal {
		n, err := p.h.pred.Read(buf)
		if err != nil {
			break
		}
		msg, ok := p.h.decode(buf[:n])
		if !ok {
			continue
		}
		switch msg.Kind {
		case "reply":
			select {
			case p.replies <- msg:
			default:
			}
		case "retired":
			select {
			case p.h.retired <- msg:
			default:
			}
		case "final":
			if msg.Carry != nil {
				final.Merge(msg.Carry)
			}
			gotFinal = msg.Done
		}
	}
	if !gotFinal {
		// The predecessor died without its final totals: keep the last ones
		// we had, so that nothing exported goes backwards.
		p.mu.Lock()
		final = p.last
		p.mu.Unlock()
		p.h.log.Warn("the previous master ended without sending its final metrics totals; carrying its last known ones")
	}
	p.agg.AddCarry(final)
	p.agg.SetPredecessor(nil)
	p.h.closePred()
}

// query asks the predecessor for its current totals: kind "query" (the
// aggregator's callback at each scrape) or "fresh" (scraped first).
func (p *predecessor) query(ctx context.Context, kind string) (*aggregate.Carry, error) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	p.id++
	id := p.id
	if err := p.h.toPred(linkMsg{Kind: kind, ID: id}, 200*time.Millisecond); err != nil {
		return nil, err
	}
	c := &aggregate.Carry{}
	for {
		select {
		case msg := <-p.replies:
			if msg.ID != id {
				continue // an answer to a query that timed out
			}
			if msg.Carry != nil {
				c.Merge(msg.Carry)
			}
			if msg.Done {
				p.mu.Lock()
				p.last = c
				p.mu.Unlock()
				return c, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
