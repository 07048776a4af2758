// Package metrics defines chatrelay's Prometheus collectors and serves them
// over HTTP.
//
// Relay implements the relay's observer interface structurally: its methods
// take only builtin types, so this package imports nothing from chatrelay
// and the relay imports nothing from Prometheus. Every collector is
// registered on a Registerer passed in by the caller, never on the global
// default registry, so tests can use a fresh prometheus.NewRegistry().
package metrics

import (
	"errors"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name defined by this package.
const Namespace = "chatrelay"

// Other is the label value under which a value outside the fixed set given
// to New is counted.
const Other = "other"

// handlerBuckets are the upper bounds, in seconds, of the handler duration
// histogram: 5µs, 20µs, 80µs, 320µs, 1.28ms, 5.12ms, 20.5ms, 81.9ms, 328ms,
// 1.31s. A handler decodes one datagram and fans it out, which normally
// takes microseconds, up to milliseconds for a large room; factor-4 steps
// give that range enough resolution in 10 buckets, and the top buckets
// still separate a stalled send from a merely slow one.
var handlerBuckets = prometheus.ExponentialBuckets(5e-6, 4, 10)

// Labels lists the allowed values of each label. New creates one series per
// value, plus one for Other, so every series is exported from the start.
type Labels struct {
	LoginResults   []string // values of chatrelay_logins_total{result}
	BroadcastKinds []string // values of chatrelay_broadcasts_total{kind}
	DropReasons    []string // values of chatrelay_datagrams_dropped_total{reason}
	// ModerationActions are the values of chatrelay_moderation_actions_total{action}.
	ModerationActions []string
}

// Relay holds the relay's collectors. Its methods are safe for concurrent
// use, take no lock of their own and do not allocate. A nil *Relay is not
// usable; use New.
type Relay struct {
	received     prometheus.Counter
	dropped      labelled
	logins       labelled
	broadcasts   labelled
	delivered    prometheus.Counter
	events       prometheus.Counter
	sendErrors   prometheus.Counter
	readErrors   prometheus.Counter
	members      prometheus.Gauge
	rooms        prometheus.Gauge
	moderation   labelled
	poolRejected prometheus.Counter
	queued       prometheus.Gauge
	panics       prometheus.Counter
	handler      prometheus.Histogram

	collectors []prometheus.Collector
}

// labelled maps the allowed values of one label to pre-created children.
// It is read-only after construction.
type labelled struct {
	byValue map[string]prometheus.Counter
	other   prometheus.Counter
}

func newLabelled(vec *prometheus.CounterVec, values []string) labelled {
	l := labelled{
		byValue: make(map[string]prometheus.Counter, len(values)+1),
		other:   vec.WithLabelValues(Other),
	}
	l.byValue[Other] = l.other
	for _, v := range values {
		l.byValue[v] = vec.WithLabelValues(v)
	}
	return l
}

// get returns the child for v, or the Other child if v is not allowed.
func (l *labelled) get(v string) prometheus.Counter {
	if c, ok := l.byValue[v]; ok {
		return c
	}
	return l.other
}

// New creates the relay's collectors and registers them as one Collector
// on reg. It panics if registration fails, for instance when reg already
// holds metrics of the same names. A nil reg registers nothing.
func New(reg prometheus.Registerer, labels Labels) *Relay {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
	}
	gauge := func(subsystem, name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help})
	}

	dropped := counterVec("datagrams_dropped_total",
		"Counter of datagrams dropped without being relayed, by reason.", "reason")
	logins := counterVec("logins_total",
		"Counter of login attempts, by result.", "result")
	broadcasts := counterVec("broadcasts_total",
		"Counter of messages broadcast to a room, by kind.", "kind")
	moderation := counterVec("moderation_actions_total",
		"Counter of operator actions on the admin socket, by action.", "action")

	r := &Relay{
		received:   counter("datagrams_received_total", "Counter of datagrams read from the socket."),
		dropped:    newLabelled(dropped, labels.DropReasons),
		logins:     newLabelled(logins, labels.LoginResults),
		broadcasts: newLabelled(broadcasts, labels.BroadcastKinds),
		delivered:  counter("deliveries_total", "Counter of datagrams handed to the kernel for members (fan-out and replies)."),
		events: counter("event_deliveries_total",
			"Counter of room events sent to members, one per member per event; several ride in one coalesced v2 datagram."),
		sendErrors: counter("send_errors_total", "Counter of failed datagram sends."),
		readErrors: counter("read_errors_total", "Counter of socket read errors other than shutdown."),
		members:    gauge("", "members", "Number of members logged in."),
		rooms:      gauge("", "rooms", "Number of rooms, main and configured ones included."),
		moderation: newLabelled(moderation, labels.ModerationActions),
		poolRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "pool", Name: "rejections_total",
			Help: "Counter of datagrams refused because the worker pool and its queue were full.",
		}),
		queued: gauge("pool", "queued", "Number of datagrams accepted and waiting for a worker."),
		panics: counter("panics_total", "Counter of panics recovered while handling a datagram."),
		handler: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "handler_duration_seconds",
			Help:    "Histogram of the time (in seconds) each datagram handler took.",
			Buckets: handlerBuckets,
		}),
	}
	r.collectors = []prometheus.Collector{
		r.received, dropped, logins, broadcasts, r.delivered, r.events, r.sendErrors,
		r.readErrors, r.members, r.rooms, moderation, r.poolRejected, r.queued, r.panics, r.handler,
	}
	if reg != nil {
		reg.MustRegister(r)
	}
	return r
}

// Describe implements prometheus.Collector.
func (r *Relay) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range r.collectors {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (r *Relay) Collect(ch chan<- prometheus.Metric) {
	for _, c := range r.collectors {
		c.Collect(ch)
	}
}

// DatagramReceived counts one datagram read (chatrelay_datagrams_received_total).
func (r *Relay) DatagramReceived() { r.received.Inc() }

// DatagramDropped counts one dropped datagram under reason, or under Other
// if reason is not one of Labels.DropReasons
// (chatrelay_datagrams_dropped_total{reason}).
func (r *Relay) DatagramDropped(reason string) { r.dropped.get(reason).Inc() }

// Login counts one login attempt under result, or under Other if result is
// not one of Labels.LoginResults (chatrelay_logins_total{result}).
func (r *Relay) Login(result string) { r.logins.get(result).Inc() }

// Broadcast counts one broadcast under kind, or under Other if kind is not
// one of Labels.BroadcastKinds (chatrelay_broadcasts_total{kind}).
func (r *Relay) Broadcast(kind string) { r.broadcasts.get(kind).Inc() }

// Delivered adds n datagrams sent (chatrelay_deliveries_total). n <= 0 is
// ignored: a counter never goes down.
func (r *Relay) Delivered(n int) {
	if n > 0 {
		r.delivered.Add(float64(n))
	}
}

// EventsDelivered adds n room events sent to members
// (chatrelay_event_deliveries_total); n <= 0 is ignored.
func (r *Relay) EventsDelivered(n int) {
	if n > 0 {
		r.events.Add(float64(n))
	}
}

// SendError counts one failed send (chatrelay_send_errors_total).
func (r *Relay) SendError() { r.sendErrors.Inc() }

// ReadError counts one socket read error (chatrelay_read_errors_total).
func (r *Relay) ReadError() { r.readErrors.Inc() }

// Members sets the number of members logged in (chatrelay_members).
func (r *Relay) Members(n int) { r.members.Set(float64(n)) }

// Rooms sets the number of rooms (chatrelay_rooms).
func (r *Relay) Rooms(n int) { r.rooms.Set(float64(n)) }

// Moderation counts one operator action
// (chatrelay_moderation_actions_total{action}).
func (r *Relay) Moderation(action string) { r.moderation.get(action).Inc() }

// PoolRejected counts one task the worker pool refused
// (chatrelay_pool_rejections_total).
func (r *Relay) PoolRejected() { r.poolRejected.Inc() }

// Queued sets the number of datagrams waiting for a worker
// (chatrelay_pool_queued).
func (r *Relay) Queued(n int) { r.queued.Set(float64(n)) }

// Panic counts one recovered panic (chatrelay_panics_total).
func (r *Relay) Panic() { r.panics.Inc() }

// HandlerDone records how long one handler ran, in seconds
// (chatrelay_handler_duration_seconds).
func (r *Relay) HandlerDone(seconds float64) { r.handler.Observe(seconds) }

// RegisterPool registers chatrelay_pool_running and chatrelay_pool_capacity,
// which read p.Running() and p.Cap() at each scrape. p's methods must be
// safe to call concurrently. On error nothing stays registered.
func RegisterPool(reg prometheus.Registerer, p interface {
	Running() int
	Cap() int
}) error {
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "pool", Name: "running",
		Help: "Number of workers handling datagrams now.",
	}, func() float64 { return float64(p.Running()) })
	capacity := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "pool", Name: "capacity",
		Help: "Number of worker goroutines the pool may run at most.",
	}, func() float64 { return float64(p.Cap()) })
	return registerAll(reg, running, capacity)
}

// RegisterRuntime registers the Go runtime collector (go_*) and the
// process collector (process_*). On error nothing stays registered.
func RegisterRuntime(reg prometheus.Registerer) error {
	return registerAll(reg,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// RegisterBuildInfo registers chatrelay_build_info{version,goversion}, a
// gauge whose value is always 1.
func RegisterBuildInfo(reg prometheus.Registerer, version string) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Number 1, labelled with the version of chatrelay and of Go it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return registerAll(reg, g)
}

// registerAll registers cs in order; if one fails it unregisters the ones
// before it and returns the error.
func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return errors.Join(errors.New("metrics: register"), err)
		}
	}
	return nil
}

// Cluster is what a relay on a shared store (NATS JetStream: --data-dir or
// --nats) reports about it. Each func is called at every scrape and MUST
// be safe for concurrent use.
type Cluster struct {
	Connected            func() bool   // the NATS connection is up
	LogLag               func() uint64 // events stored that this node's members were not handed yet
	LeaseRefreshFailures func() uint64 // name-lease refreshes that failed, since start
}

// RegisterCluster registers chatrelay_nats_connected,
// chatrelay_log_lag_events and chatrelay_lease_refresh_failures_total.
func RegisterCluster(reg prometheus.Registerer, c Cluster) error {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, col := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chatrelay_nats_connected",
			Help: "1 while the relay's connection to NATS (embedded or a cluster) is up, 0 while it is not.",
		}, func() float64 { return b2f(c.Connected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chatrelay_log_lag_events",
			Help: "Events stored in the logs of the rooms this node follows that it has not handed to its members yet.",
		}, func() float64 { return float64(c.LogLag()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "chatrelay_lease_refresh_failures_total",
			Help: "Name-lease refreshes that failed: a name may be freed under a live member.",
		}, func() float64 { return float64(c.LeaseRefreshFailures()) }),
	} {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
