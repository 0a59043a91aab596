// Package aggregate merges every worker's Prometheus registry into the
// master's single /metrics endpoint, and holds both ends of the metrics
// socket between a master and its workers: the master's Aggregator and the
// worker's WorkerServer. It is internal: users see the result (one
// endpoint, counters that never go backwards) and package aggregate.
//
//	agg := aggregate.NewAggregator(aggregate.AggregatorOptions{Logger: log})
//	defer agg.Close()
//	agg.Add(slot, pid, masterEnd)              // after the worker started
//	agg.Remove(pid)                            // after the worker was reaped
//	promhttp.HandlerFor(prometheus.Gatherers{masterReg, agg}, promhttp.HandlerOpts{})
//
// In the worker (package server does this):
//
//	srv := aggregate.NewWorkerServer(metricsFile, reg)
//	defer srv.Close()                          // sends a final snapshot
//
// Every worker series is exported with the label worker="<slot>" (never the
// pid, which would make new series at every restart). A label named "worker"
// that a worker sets itself is renamed "exported_worker", as Prometheus does
// with honor_labels off.
//
// # Carry-over: counters never go backwards
//
// A series is identified by its family name and its sorted label pairs
// (without the worker label). For each slot and series the Aggregator keeps a
// carry: the last seen values of the slot's dead workers. Counters carry their
// value; histograms their sample count, sample sum and every bucket's
// cumulative count by upper bound; summaries their count and sum (quantiles
// are not carried: a summary known only from the carry is exported with count
// and sum and no quantiles). Gauges and untyped metrics are never carried: a
// dead worker's gauges vanish with it.
//
// The exported value of a counter-like series of slot s is the sum over the
// live workers of s (usually one, two during a replacement) of their last seen
// value, plus the carry of s. Workers' counters only grow and the carry only
// grows, so the exported value never decreases. A carried series is exported
// even when its slot has no live worker or the live worker does not have that
// series yet. Created timestamps are dropped from counters, histograms and
// summaries (a sum has no creation time). When values of several sources are
// summed into a native histogram, its native buckets are dropped and only the
// classic buckets, count and sum are exported. Histograms whose bucket layouts
// differ are summed over the union of their upper bounds; a bound a histogram
// lacks counts, for it, the cumulative count of its next lower bound.
//
// At an upgrade the new master takes over the old master's totals: while the
// old master runs, SetPredecessor lets the new one add the old one's current
// Totals to every scrape; when the old master is done, AddCarry of its final
// Totals (possibly in pieces from Carry.Split or Carry.SplitSize) followed by
// SetPredecessor(nil) makes them permanent. See SetPredecessor for the order.
//
// # Wire protocol on PREFORK_METRICS_FD
//
// The master and each worker share one unix stream socket (a socketpair, one
// end in each process). All integers are little-endian.
//
//	master → worker: request = seq uint64 (8 bytes, seq ≥ 1, increasing)
//	worker → master: frame   = seq uint64 | length uint32 | payload[length]
//
// The payload is the worker's registry in the varint length-delimited
// protobuf exposition format (expfmt.TypeProtoDelim, names unescaped, that is
// FmtProtoDelim with escaping=allow-utf-8): a sequence of
// io.prometheus.client.MetricFamily messages, each preceded by its length.
// A frame's seq echoes the request it answers. A worker that reads several
// requests at once answers only the latest. A worker that stops (WorkerServer.Close)
// sends one unsolicited frame with seq 0xFFFFFFFFFFFFFFFF, its final snapshot,
// and then closes the socket. A worker never sends a frame larger than 16 MiB;
// the master closes the connection on one (and on any malformed header), and
// keeps the worker's last good copy. A frame whose payload does not decode is
// counted as answered and its payload ignored; three in a row close the
// connection. The master holds at most AggregatorOptions.MaxHeld bytes of
// snapshots for all workers together (256 MiB by default): a frame that
// would go past it is dropped and the worker's previous copy kept.
// Concurrent scrapes share one gather. The master keeps each worker's
// families of its last frame by their bytes: a family sent again unchanged
// is not decoded again (nothing in the protocol changes for it).
//
// The master runs one reader goroutine per worker that reads frames for as long
// as the socket is open and keeps the latest one with its seq. A scrape writes
// a new seq (with a write deadline) unless an earlier request is still
// unanswered, and waits until a frame with seq ≥ the request has arrived or
// the timeout passed; a late answer is just a newer copy, so it never
// desynchronises the stream. A worker therefore has at most one request
// outstanding, and a stopped worker's socket buffer never fills with requests.
//
// The exchange is plain enough to implement in any language that has a
// protobuf library. Do not Add a worker that does not speak it (an external
// command that ignores PREFORK_METRICS_FD): every scrape would wait the full
// timeout for it and count a timeout.
package aggregate
