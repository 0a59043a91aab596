package aggregate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// workerWriteTimeout bounds one frame write of a worker, so that a master
// that stopped reading cannot hang a worker's Close.
const workerWriteTimeout = 2 * time.Second

// WorkerServer answers the master's scrape requests on a worker's metrics
// socket. See the package documentation for the protocol.
type WorkerServer struct {
	conn streamConn
	g    prometheus.Gatherer

	// mu serialises frames, so they leave in the order they were gathered
	// (a later frame never holds older counters), and guards closing and buf.
	mu      sync.Mutex
	closing bool
	buf     bytes.Buffer

	once sync.Once
	err  error
	done chan struct{}
}

// NewWorkerServer takes ownership of f, the worker's end of the metrics
// socketpair (PREFORK_METRICS_FD), and starts one goroutine that answers each
// request of the master with g.Gather() until Close. If Gather fails, the
// families it did return are sent; if it returned none, the request is not
// answered (the master then serves its last copy). A nil g serves an empty
// registry. f should be a socket: then Close interrupts a pending read (see
// the package doc); f is closed at once (a dup of it is used).
func NewWorkerServer(f *os.File, g prometheus.Gatherer) *WorkerServer {
	if g == nil {
		g = prometheus.Gatherers{}
	}
	s := &WorkerServer{conn: newStreamConn(f), g: g, done: make(chan struct{})}
	go s.serve()
	return s
}

func (s *WorkerServer) serve() {
	defer close(s.done)
	br := bufio.NewReaderSize(s.conn, 64*requestLen)
	var req [requestLen]byte
	for {
		if _, err := io.ReadFull(br, req[:]); err != nil {
			return
		}
		// Answer only the latest of the requests already received.
		for br.Buffered() >= requestLen {
			if _, err := io.ReadFull(br, req[:]); err != nil {
				return
			}
		}
		err := s.answer(binary.LittleEndian.Uint64(req[:]))
		if err != nil && !errors.Is(err, errFrameTooLarge) && !errors.Is(err, errNothing) {
			return
		}
	}
}

// errNothing: Gather failed without returning any family.
var errNothing = errors.New("gather returned nothing")

func (s *WorkerServer) answer(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errClosed
	}
	return s.sendLocked(seq)
}

// sendLocked gathers and sends one frame. s.mu is held.
func (s *WorkerServer) sendLocked(seq uint64) error {
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return errNothing
	}
	if err := encodeFrame(&s.buf, seq, mfs); err != nil {
		return err
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(workerWriteTimeout))
	_, err = s.conn.Write(s.buf.Bytes())
	if s.buf.Cap() > 1<<20 {
		s.buf = bytes.Buffer{} // don't keep a large buffer between scrapes
	}
	return err
}

// Close sends one final unsolicited snapshot (so that the master keeps the
// last counters of a worker that drained and exits), then closes the socket
// and waits for the goroutine. It waits for a frame being sent and bounds its
// own write by a short timeout (2 s), so it returns even if the master stopped
// reading. It returns the error of sending the final snapshot or of closing,
// joined; a master that is already gone shows as a write error. Calling it
// again does nothing and returns the same error.
func (s *WorkerServer) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closing = true
		werr := s.sendLocked(finalSeq)
		s.mu.Unlock()
		cerr := s.conn.Close()
		<-s.done
		s.err = errors.Join(werr, cerr)
	})
	return s.err
}
