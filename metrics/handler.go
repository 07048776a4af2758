package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the server run by Serve. A scrape is one small request and
// response; anything slower is a stuck or hostile client.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second
)

// Handler returns an http.Handler serving the metrics gathered from g at
// /metrics and "ok\n" with status 200 at /healthz and /livez; other paths
// get 404. If g is also a prometheus.Registerer (as *prometheus.Registry
// is), the handler's own error counter, promhttp_metric_handler_errors_total,
// is registered on it; calling Handler again with the same g reuses it.
func Handler(g prometheus.Gatherer) http.Handler { return HandlerReady(g, nil) }

// HandlerReady is Handler whose /healthz asks ready: while it returns an
// error, /healthz answers 503 with the error on one line (a load balancer
// or a readiness probe stops sending members to this relay), and /livez
// still answers 200 (the process serves: do not restart it for that).
func HandlerReady(g prometheus.Gatherer, ready func() error) http.Handler {
	opts := promhttp.HandlerOpts{}
	if reg, ok := g.(prometheus.Registerer); ok {
		opts.Registry = reg
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, opts))
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("GET /livez", ok)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(strings.ReplaceAll(err.Error(), "\n", " ") + "\n"))
				return
			}
		}
		ok(w, r)
	})
	return mux
}

// Serve serves h on ln until ctx is done, then shuts down gracefully:
// it stops accepting, waits up to 5 seconds for requests in progress and
// returns nil. Serve closes ln and, when it returns, has stopped accepting.
// It returns an error if serving fails before ctx is done, or if the
// shutdown deadline passes; in both cases open connections are closed
// forcibly.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		_ = srv.Close() // drop connections still open
		return fmt.Errorf("metrics: serve: %w", err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}
