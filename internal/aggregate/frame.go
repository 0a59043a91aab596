package aggregate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	// finalSeq marks the unsolicited last snapshot of a stopping worker.
	finalSeq = ^uint64(0)
	// requestLen is the size of a request: one seq.
	requestLen = 8
	// headerLen is the size of a frame header: seq and payload length.
	headerLen = 12
	// maxFrame is the largest payload either side accepts.
	maxFrame = 16 << 20
)

var (
	errFrameTooLarge = errors.New("metrics frame larger than 16 MiB")
	errClosed        = errors.New("metrics server closed")
	errBadPayload    = errors.New("metrics frame payload is not length-delimited protobuf")
)

// wireFormat is the payload encoding: varint-delimited protobuf, names sent
// as they are (no escaping), so UTF-8 names survive the trip.
func wireFormat() expfmt.Format {
	return expfmt.NewFormat(expfmt.TypeProtoDelim).WithEscapingScheme(model.NoEscaping)
}

// streamConn is one end of the metrics socketpair.
type streamConn interface {
	io.ReadWriteCloser
	SetWriteDeadline(t time.Time) error
}

// newStreamConn takes ownership of f. A socket becomes a net.Conn (a dup of
// the descriptor in non-blocking mode, registered with the runtime poller), so
// that Close interrupts a blocked Read and writes honour deadlines; f itself
// is closed. Anything else is used as it is: then Close may not interrupt a
// Read, and deadlines work only if f is pollable.
func newStreamConn(f *os.File) streamConn {
	c, err := net.FileConn(f)
	if err != nil {
		return f
	}
	f.Close()
	return c
}

// encodeFrame writes a complete frame (header and payload) into buf,
// replacing its contents.
func encodeFrame(buf *bytes.Buffer, seq uint64, mfs []*dto.MetricFamily) error {
	buf.Reset()
	buf.Write(make([]byte, headerLen))
	enc := expfmt.NewEncoder(buf, wireFormat())
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("encode %s: %w", mf.GetName(), err)
		}
		if buf.Len()-headerLen > maxFrame {
			return errFrameTooLarge
		}
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint64(b[0:8], seq)
	binary.LittleEndian.PutUint32(b[8:12], uint32(len(b)-headerLen))
	return nil
}

// readFrame reads one frame from r into payload (replacing its contents) and
// returns its seq. It refuses a length above maxFrame. The payload grows as
// bytes arrive, so a lying header costs no large allocation up front.
func readFrame(r io.Reader, payload *bytes.Buffer) (uint64, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	seq := binary.LittleEndian.Uint64(hdr[0:8])
	n := binary.LittleEndian.Uint32(hdr[8:12])
	if n > maxFrame {
		return 0, errFrameTooLarge
	}
	payload.Reset()
	if _, err := io.CopyN(payload, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return seq, nil
}

// decodeFamilies decodes a frame payload.
func decodeFamilies(payload []byte) ([]*dto.MetricFamily, error) {
	msgs, err := splitMessages(payload)
	if err != nil {
		return nil, err
	}
	mfs := make([]*dto.MetricFamily, 0, len(msgs))
	for _, msg := range msgs {
		mf, err := decodeFamily(msg)
		if err != nil {
			return nil, err
		}
		mfs = append(mfs, mf)
	}
	return mfs, nil
}

// splitMessages cuts a payload into its length-delimited messages, each
// with its length prefix. expfmt's decoder trusts each message's length
// prefix (no MaxSize): one huge prefix would make it allocate that much,
// so they are all checked here first.
func splitMessages(payload []byte) ([][]byte, error) {
	var msgs [][]byte
	for rest := payload; len(rest) > 0; {
		n, k := protowire.ConsumeVarint(rest)
		if k < 0 || n > uint64(len(rest)-k) {
			return nil, errBadPayload
		}
		msgs = append(msgs, rest[:k+int(n)])
		rest = rest[k+int(n):]
	}
	return msgs, nil
}

// decodeFamily decodes one message of splitMessages.
func decodeFamily(msg []byte) (*dto.MetricFamily, error) {
	mf := &dto.MetricFamily{}
	if err := expfmt.NewDecoder(bytes.NewReader(msg), wireFormat()).Decode(mf); err != nil {
		return nil, err
	}
	return mf, nil
}
