package udpio

// Batch gathers datagrams, each with its own bytes and destination, and
// sends them with as few system calls as it can: on Linux with batching on,
// up to 1,024 per sendmmsg, never waiting (MSG_DONTWAIT); elsewhere one send
// each. It lets a fan-out that sends many small groups (a chat to a room of
// ten, then another room's) fill each system call instead of making one per
// group.
//
// A Batch is not safe for concurrent use. The bytes and destinations given
// to Add MUST stay unchanged until the Flush that follows (or the Add that
// fills the batch) returns.
type Batch struct {
	c     *Conn
	n     int // datagrams waiting
	bufs  [batchSize][1][]byte
	dests [batchSize]*Dest
	tags  [batchSize]int
	plat  batchPlat

	// Failed counts the datagrams the kernel refused since the last Reset;
	// Lost adds up the tags of those datagrams.
	Failed, Lost int
}

// batchSize is how many datagrams a Batch sends in one system call at most
// (the kernel's limit for sendmmsg, UIO_MAXIOV).
const batchSize = 1024

// NewBatch returns an empty batch that sends on c (on Linux through a
// descriptor of its own: see batchPlat).
func (c *Conn) NewBatch() *Batch {
	b := &Batch{c: c}
	b.plat.init(-1)
	return b
}

// NewBatchOn returns an empty batch that sends on c through its slot-th
// sender descriptor (slot >= 0), which every batch of that slot shares: a
// destination that only batches of one slot send to gets its datagrams
// through one socket, in the order they were sent, whichever of those
// batches sent them; batches of different slots send at once without
// contending. A Batch itself is still not safe for concurrent use.
func (c *Conn) NewBatchOn(slot int) *Batch {
	b := &Batch{c: c}
	b.plat.init(max(slot, 0))
	return b
}

// Add queues b for d, sending the batch first if it is full. tag is what
// the datagram's failure adds to Lost (the events it carries, say).
func (b *Batch) Add(p []byte, d *Dest, tag int) {
	if b.n == batchSize {
		b.Flush()
	}
	b.bufs[b.n][0], b.dests[b.n], b.tags[b.n] = p, d, tag
	b.n++
}

// Flush sends every queued datagram.
func (b *Batch) Flush() {
	if b.n == 0 {
		return
	}
	b.send()
	for i := range b.n {
		b.bufs[i][0], b.dests[i] = nil, nil
	}
	b.n = 0
}

// Discard forgets the queued datagrams without sending them (after a
// panic, when their bytes may no longer be valid).
func (b *Batch) Discard() {
	clear(b.bufs[:b.n])
	clear(b.dests[:b.n])
	b.n = 0
}

// fail records that datagram i of the batch was not sent.
func (b *Batch) fail(i int) {
	b.Failed++
	b.Lost += b.tags[i]
}

// Reset zeroes Failed and Lost.
func (b *Batch) Reset() { b.Failed, b.Lost = 0, 0 }
