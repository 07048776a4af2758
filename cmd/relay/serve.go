package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/chatrelay/chatrelay/metrics"
	"github.com/chatrelay/chatrelay/pool"
	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// listeners are what serve opened, reported to tests through onReady.
type listeners struct {
	UDP     net.Addr
	Metrics net.Addr // nil when disabled
	Admin   string
}

// serve runs the relay until ctx ends, then shuts down cleanly: members are
// told, the queue drains within DrainTimeout, the admin socket file is
// removed. Errors opening anything come back before the relay serves.
// socketBuffer is the receive and send buffer of each UDP socket: 16 MiB,
// so that a burst of chats (and the fan-out of each, thousands of
// datagrams per system call) waits in the kernel instead of being dropped.
const socketBuffer = 16 << 20

func serve(ctx context.Context, o Options, log *zap.Logger, onReady func(listeners)) error {
	return serveReloading(ctx, o, log, onReady, nil)
}

// serveReloading is serve that also reloads its configuration on each of
// rl's signals (SIGHUP), while it serves; rl nil never reloads.
func serveReloading(ctx context.Context, o Options, log *zap.Logger, onReady func(listeners), rl *reloader) error {
	lang, _ := wire.ParseLang(o.Lang)
	floodSettings, err := o.floodSettings()
	if err != nil {
		return err
	}

	// Open everything that can fail first, so a taken port or an unusable
	// path is one clear error and nothing is left half-started.
	ucs, err := relay.Listen(o.Listen, o.Readers, socketBuffer)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Listen, unwrapOp(err))
	}
	defer func() {
		for _, uc := range ucs {
			uc.Close()
		}
	}()

	if o.AdminSocket == defaultAdminSocket() {
		// Only the default's directory is ours to create; a path the
		// operator chose must exist.
		if err := os.MkdirAll(filepath.Dir(o.AdminSocket), 0o700); err != nil {
			return fmt.Errorf("admin socket %s: %w", o.AdminSocket, err)
		}
	}
	adminLn, err := relay.ListenAdmin(o.AdminSocket)
	if err != nil {
		if errors.Is(err, relay.ErrAdminInUse) {
			return fmt.Errorf("another relay is already running with admin socket %s", o.AdminSocket)
		}
		return fmt.Errorf("admin socket %s: %w", o.AdminSocket, unwrapOp(err))
	}
	defer adminLn.Close() // removes the socket file

	var metricsLn net.Listener
	if o.MetricsListen != "" {
		metricsLn, err = net.Listen("tcp", o.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen on %s: %w", o.MetricsListen, unwrapOp(err))
		}
		defer metricsLn.Close()
	}

	reg := prometheus.NewRegistry()
	obs := metrics.New(reg, metrics.Labels{
		LoginResults:   relay.LoginResults,
		BroadcastKinds: relay.BroadcastKinds,
		DropReasons:    relay.DropReasons,

		ModerationActions: relay.ModerationActions,
	})
	if err := metrics.RegisterRuntime(reg); err != nil {
		return err
	}
	if err := metrics.RegisterBuildInfo(reg, version); err != nil {
		return err
	}

	workers, err := pool.New[func()](o.Workers, func(task func()) { task() }, pool.Options{
		OnPanic: func(v any) {
			// The relay recovers handler panics itself; this is a backstop.
			obs.Panic()
			log.Error("worker panic", zap.Any("panic", v))
		},
	})
	if err != nil {
		return err
	}
	defer workers.Close(o.DrainTimeout)

	var names relay.NameDirectory
	var logs relay.RoomLogs
	var sessions relay.SessionStore
	var cluster relay.Cluster
	var operator relay.OperatorStore
	node := ""
	var st *store
	if o.DataDir != "" || o.NATS != "" {
		st, err = openStore(o, log)
		if err != nil {
			return err
		}
		defer st.Close() // after the relay's last events are stored
		names, logs, sessions, node, operator, cluster = st.names, st.logs, st.sessions, st.node, st.ops, st.cluster
		if o.NATS != "" {
			log.Info("rooms shared over NATS", zap.String("nats", st.nc.ConnectedUrlRedacted()), zap.String("node", o.node()),
				zap.Int("replicas", o.NATSReplicas), zap.Duration("name_lease", o.NameLease), zap.Int("history", o.History))
		} else {
			log.Info("history stored", zap.String("data_dir", o.DataDir), zap.Int("history", o.History), zap.Duration("history_age", o.HistoryAge))
		}
	}

	srv, err := relay.New(relay.Config{
		Names:              names,
		Logs:               logs,
		Sessions:           sessions,
		Node:               node,
		Cluster:            cluster,
		Operator:           operator,
		MaxDatagram:        o.MaxDatagram,
		MaxMembers:         o.MaxMembers,
		MaxRooms:           o.MaxRooms,
		MaxRoomsPerMember:  o.RoomsPerMember,
		AnnounceLimit:      o.AnnounceLimit,
		Rooms:              o.Rooms,
		MaxPerIP:           o.MaxPerIP,
		LimitLoopbackPerIP: o.PerIPLoopback,
		Workers:            o.Workers,
		QueueLimit:         o.Queue,
		SenderQueueLimit:   o.SenderQueue,
		Lang:               lang,
		DisableClassic:     o.Classic == "off",
		V2Timeout:          o.V2Timeout,
		ClassicIdle:        o.ClassicIdle,
		Ring:               o.Ring,
		Backlog:            backlog(o.Backlog),
		SendBudget:         o.SendBudget,
		LoopbackSendBudget: o.LoopbackBudget,
		NoBatch:            o.Batch == "off",
		FanoutShards:       o.FanoutShards,
		Flood:              &floodSettings,
		Executor:           workers,
		Observer:           obs,
		Logger:             log,
	})
	if err != nil {
		return err
	}
	// ants counts idle workers as running; the relay knows how many are
	// busy, which is what an operator watching saturation wants.
	if err := metrics.RegisterPool(reg, poolGauges{srv, workers}); err != nil {
		return err
	}
	var ready func() error
	if st != nil {
		ready = st.Ready
		if err := metrics.RegisterCluster(reg, metrics.Cluster{
			Connected:            func() bool { return st.Ready() == nil },
			LogLag:               srv.LogLag,
			LeaseRefreshFailures: st.leaseFailures.Load,
		}); err != nil {
			return err
		}
	}

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- srv.ServeGroup(ucs) }()
	go func() { defer wg.Done(); errc <- srv.ServeAdmin(adminLn) }()
	mctx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	if metricsLn != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- metrics.Serve(mctx, metricsLn, metrics.HandlerReady(reg, ready)) }()
	}
	<-srv.Ready()
	l := listeners{UDP: ucs[0].LocalAddr(), Admin: o.AdminSocket}
	fields := []zap.Field{zap.Stringer("udp", l.UDP), zap.String("admin_socket", l.Admin)}
	if metricsLn != nil {
		l.Metrics = metricsLn.Addr()
		fields = append(fields, zap.String("metrics", "http://"+l.Metrics.String()+"/metrics"))
	}
	log.Info("relay ready", fields...)
	if onReady != nil {
		onReady(l)
	}

	var runErr error
	var reload <-chan os.Signal
	if rl != nil {
		reload = rl.signals
	}
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", zap.Duration("drain_timeout", o.DrainTimeout))
			break wait
		case runErr = <-errc:
			// A server stopped on its own: shut the rest down and report it.
			log.Error("server stopped unexpectedly", zap.Error(runErr))
			break wait
		case <-reload:
			rl.reload(srv, log)
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("queue did not drain in time", zap.Error(err))
	}
	cancel()
	adminLn.Close()
	stopMetrics()
	for _, uc := range ucs {
		uc.Close()
	}
	wg.Wait()
	if err := workers.Close(o.DrainTimeout); err != nil {
		log.Warn("worker pool did not stop in time", zap.Error(err))
	}
	log.Info("relay stopped")
	return runErr
}

// backlog maps the flag's 0 (none) to the Config's -1.
func backlog(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// poolGauges reports busy workers from the relay and capacity from the pool.
type poolGauges struct {
	srv  *relay.Server
	pool *pool.Pool[func()]
}

func (g poolGauges) Running() int { return g.srv.Running() }
func (g poolGauges) Cap() int     { return g.pool.Cap() }

// unwrapOp drops net.OpError's repetition of the address, which the caller
// already names: "listen udp :9999: bind: address already in use" becomes
// "bind: address already in use".
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sys *os.SyscallError
		if errors.As(op.Err, &sys) {
			return fmt.Errorf("%s: %w", sys.Syscall, sys.Err)
		}
		return op.Err
	}
	return err
}

func parseLevel(s string) (zapcore.Level, error) {
	l, err := zapcore.ParseLevel(s)
	if err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the daemon's logger on w (stderr).
func newLogger(o Options, w zapcore.WriteSyncer) *zap.Logger {
	log, _ := newLeveledLogger(o, w)
	return log
}

// newLeveledLogger is newLogger with the level it logs at, which SIGHUP
// changes while the logger is in use.
func newLeveledLogger(o Options, w zapcore.WriteSyncer) (*zap.Logger, zap.AtomicLevel) {
	l, _ := parseLevel(o.LogLevel)
	level := zap.NewAtomicLevelAt(l)
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if o.LogFormat == "json" {
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, w, level), zap.ErrorOutput(w)), level
}

// waitTimeout is how long admin client requests may take.
const waitTimeout = 5 * time.Second
