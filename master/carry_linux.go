//go:build linux

package master

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/preforkd/preforkd/metrics"
)

// succLoop serves the successor side of the hand-off socket for the life
// of the master: it passes pid announcements to successorPid, answers
// totals queries with the aggregator's current totals, and, when final is
// closed, sends the final totals and returns. It returns when the socket is
// closed.
func (m *master) succLoop(final <-chan struct{}, finalSent chan<- struct{}) {
	h := m.handoff
	msgs := make(chan handoffMsg)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, maxHandoffMsg)
		for {
			h.succ.SetReadDeadline(time.Time{})
			n, err := h.succ.Read(buf)
			if err != nil {
				return
			}
			var msg handoffMsg
			if json.Unmarshal(buf[:n], &msg) != nil {
				continue
			}
			select {
			case msgs <- msg:
			case <-m.quit:
				return
			}
		}
	}()
	for {
		select {
		case msg := <-msgs:
			switch msg.Kind {
			case "":
				if msg.PID > 0 {
					// The successor is about to call Ready: from now on only
					// it serves /metrics, whose totals include ours, so that
					// no scrape sees a counter go backwards.
					m.pauseMetrics()
					select {
					case h.pids <- msg:
					default: // nobody waits: a stale attempt
					}
				}
			case "query":
				m.sendTotals("reply", msg.ID)
			}
		case <-final:
			final = nil
			m.sendTotals("final", 0)
			close(finalSent)
		case <-readDone:
			return
		case <-m.quit:
			return
		}
	}
}

// sendTotals sends the aggregator's totals, one slot per message, then a
// Done message.
func (m *master) sendTotals(kind string, id int) {
	for _, c := range m.agg.Totals().SplitSize(maxHandoffMsg - 4<<10) {
		if err := m.handoff.send(handoffMsg{Kind: kind, ID: id, Carry: c}); err != nil {
			m.log.Warn("cannot send metrics totals to the new master", "err", err)
			return
		}
	}
	m.handoff.send(handoffMsg{Kind: kind, ID: id, Done: true})
}

// maxHandoffMsg bounds one hand-off message (a SOCK_SEQPACKET record).
const maxHandoffMsg = 64 << 10

// predLink is the new master's side: it asks the predecessor for its
// current totals while it runs, and carries its final totals.
type predLink struct {
	m       *master
	f       *os.File
	qmu     sync.Mutex // one query at a time
	id      int
	replies chan handoffMsg
	mu      sync.Mutex
	last    *metrics.Carry // the last complete reply
}

// startPredLink reads the predecessor socket until it closes. Call once,
// after the hand-off messages of the start were read.
func (m *master) startPredLink() *predLink {
	p := &predLink{m: m, f: m.handoff.pred, replies: make(chan handoffMsg, 16)}
	m.agg.SetPredecessor(p.query)
	m.predDone = make(chan struct{})
	go func() {
		defer close(m.predDone)
		p.read()
	}()
	return p
}

func (p *predLink) read() {
	final := &metrics.Carry{}
	gotFinal := false
	buf := make([]byte, maxHandoffMsg)
	for {
		p.f.SetReadDeadline(time.Time{})
		n, err := p.f.Read(buf)
		if err != nil {
			break
		}
		var msg handoffMsg
		if json.Unmarshal(buf[:n], &msg) != nil {
			continue
		}
		switch msg.Kind {
		case "reply":
			select {
			case p.replies <- msg:
			default:
			}
		case "final":
			if msg.Carry != nil {
				final.Merge(msg.Carry)
			}
			if msg.Done {
				gotFinal = true
			}
		}
		if gotFinal {
			break
		}
	}
	if !gotFinal {
		// The predecessor died without its final totals: keep the last ones
		// we had, so that nothing exported goes backwards.
		p.mu.Lock()
		final = p.last
		p.mu.Unlock()
		p.m.log.Warn("the previous master ended without sending its final metrics totals; carrying its last known ones")
	}
	p.m.agg.AddCarry(final)
	p.m.agg.SetPredecessor(nil)
	p.m.handoff.closePred()
}

// query asks the predecessor for its current totals (aggregator callback).
func (p *predLink) query(ctx context.Context) (*metrics.Carry, error) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	p.id++
	id := p.id
	b, _ := json.Marshal(handoffMsg{Kind: "query", ID: id})
	p.f.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := p.f.Write(b); err != nil {
		return nil, err
	}
	c := &metrics.Carry{}
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
