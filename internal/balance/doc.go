// Package balance spreads connections evenly over the workers that share
// one listening socket.
//
// On one shared accept queue, the worker that happens to be on a CPU when
// connections arrive takes them: a burst of keep-alive connections lands
// on one worker, and with fresh connections the busiest worker serves far
// more than the idlest. Here each worker records, on a small board of
// counters in memory that every worker of a master maps (a memfd the
// master creates), how many connections it has open and how many it has
// accepted. Before each accept, a worker compares itself with the other
// active workers; while it is over its share it leaves the queue to the
// others, for at most MaxWait, then accepts anyway (so a stuck or dead peer
// never stalls it). Over its share means, in mode Conns: MinOpen or more
// open connections and more than one above the average; in mode Accepts,
// also more than Slack accepted connections ahead of the average of the
// workers accepting now.
// Connections stay in the one shared queue the master holds: a worker's
// crash loses only what it had accepted, and an upgrade loses nothing.
//
// Workers that do not use the board (an external command) are simply not
// counted. The board is writable by every worker: a worker that writes
// lies can make the others wait at most MaxWait per accept, no worse.
//
// The master creates the board (Create) and hands its descriptor to Go
// workers; a worker maps it (Map) and wraps its listeners (Listener). The
// master frees a worker's entry when the worker exits (Free).
package balance
