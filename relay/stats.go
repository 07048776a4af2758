package relay

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the relay's own counters, for the admin `stats`
// command. Prometheus sees the same events through the Observer.
type Stats struct {
	Members           int
	Uptime            time.Duration
	DatagramsReceived uint64
	DatagramsDropped  uint64
	Logins            uint64 // successful, repeats excluded
	Broadcasts        uint64
	Deliveries        uint64
	SendErrors        uint64
	Panics            uint64
	Queued            int64
	ICMPErrors        uint64 // port-unreachable errors about members' addresses
}

// counting tees every count to the configured Observer and keeps the few
// totals the admin `stats` command prints.
type counting struct {
	next Observer

	received, dropped, logins, broadcasts, deliveries, sendErrors, panics atomic.Uint64
	queued                                                                atomic.Int64
	icmpErrors                                                            atomic.Uint64
}

func (c *counting) DatagramReceived() { c.received.Add(1); c.next.DatagramReceived() }
func (c *counting) DatagramDropped(reason string) {
	c.dropped.Add(1)
	c.next.DatagramDropped(reason)
}
func (c *counting) Login(result string) {
	if result == LoginOK {
		c.logins.Add(1)
	}
	c.next.Login(result)
}
func (c *counting) Broadcast(kind string) { c.broadcasts.Add(1); c.next.Broadcast(kind) }
func (c *counting) Delivered(n int) {
	if n > 0 {
		c.deliveries.Add(uint64(n))
	}
	c.next.Delivered(n)
}
func (c *counting) EventsDelivered(n int) { c.next.EventsDelivered(n) }
func (c *counting) SendError()            { c.sendErrors.Add(1); c.next.SendError() }
func (c *counting) ReadError()            { c.next.ReadError() }
func (c *counting) Members(n int)         { c.next.Members(n) }
func (c *counting) Rooms(n int)           { c.next.Rooms(n) }
func (c *counting) Moderation(a string)   { c.next.Moderation(a) }
func (c *counting) PoolRejected()         { c.next.PoolRejected() }
func (c *counting) Queued(n int)          { c.queued.Store(int64(n)); c.next.Queued(n) }
func (c *counting) Panic()                { c.panics.Add(1); c.next.Panic() }
func (c *counting) HandlerDone(s float64) { c.next.HandlerDone(s) }

func (c *counting) snapshot() Stats {
	return Stats{
		DatagramsReceived: c.received.Load(),
		DatagramsDropped:  c.dropped.Load(),
		Logins:            c.logins.Load(),
		Broadcasts:        c.broadcasts.Load(),
		Deliveries:        c.deliveries.Load(),
		SendErrors:        c.sendErrors.Load(),
		Panics:            c.panics.Load(),
		Queued:            c.queued.Load(),
		ICMPErrors:        c.icmpErrors.Load(),
	}
}
