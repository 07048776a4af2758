package relay

// Observer receives the relay's counts. Its methods take only builtin types,
// so a metrics package can satisfy it without importing relay. Label-like
// string arguments always come from the fixed sets in this package
// (LoginResults, BroadcastKinds, DropReasons). Every method MUST be safe for
// concurrent use and MUST NOT block: it is called on the datagram path.
type Observer interface {
	// DatagramReceived counts one datagram read from the socket.
	DatagramReceived()
	// DatagramDropped counts one datagram dropped for reason.
	DatagramDropped(reason string)
	// Login counts one login attempt by result.
	Login(result string)
	// Broadcast counts one fan-out of kind to the room.
	Broadcast(kind string)
	// Delivered counts n datagrams handed to the kernel for members.
	Delivered(n int)
	// EventsDelivered counts n room events handed to the kernel for
	// members, one per member per event: several can ride in one v2
	// datagram, so this is Delivered's count or more.
	EventsDelivered(n int)
	// SendError counts one datagram the kernel refused (ECONNREFUSED,
	// EAGAIN on a full socket buffer, ...); the recipient misses it.
	SendError()
	// ReadError counts one socket read error that was not a shutdown.
	ReadError()
	// Members reports the current number of members.
	Members(n int)
	// Rooms reports the current number of rooms.
	Rooms(n int)
	// Moderation counts one operator action by kind (ModerationActions).
	Moderation(action string)
	// PoolRejected counts one datagram refused because the worker pool and
	// its queue were full.
	PoolRejected()
	// Queued reports the number of datagrams waiting for a worker.
	Queued(n int)
	// Panic counts one recovered handler panic.
	Panic()
	// HandlerDone observes how long one datagram took to handle, in seconds.
	HandlerDone(seconds float64)
}

// Executor runs tasks on a bounded set of goroutines. The relay submits a
// few long-lived drain tasks rather than one task per datagram (see
// dispatch.go), so Invoke is off the per-datagram path.
//
// Invoke MUST NOT block: when no worker is free it returns an error at once.
// It MUST run task at most once.
type Executor interface {
	Invoke(task func()) error
}

// NopObserver discards every count. It is the default when Config.Observer
// is nil.
type NopObserver struct{}

func (NopObserver) DatagramReceived()      {}
func (NopObserver) DatagramDropped(string) {}
func (NopObserver) Login(string)           {}
func (NopObserver) Broadcast(string)       {}
func (NopObserver) Delivered(int)          {}
func (NopObserver) EventsDelivered(int)    {}
func (NopObserver) SendError()             {}
func (NopObserver) ReadError()             {}
func (NopObserver) Members(int)            {}
func (NopObserver) Rooms(int)              {}
func (NopObserver) Moderation(string)      {}
func (NopObserver) PoolRejected()          {}
func (NopObserver) Queued(int)             {}
func (NopObserver) Panic()                 {}
func (NopObserver) HandlerDone(float64)    {}
