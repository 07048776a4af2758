package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/chatrelay/chatrelay/metrics"
)

// observer is a copy of relay.Observer; this package must not import relay.
type observer interface {
	DatagramReceived()
	DatagramDropped(reason string)
	Login(result string)
	Broadcast(kind string)
	Delivered(n int)
	EventsDelivered(n int)
	SendError()
	ReadError()
	Members(n int)
	PoolRejected()
	Queued(n int)
	Panic()
	HandlerDone(seconds float64)
}

var _ observer = (*metrics.Relay)(nil)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// relayLabels are the sets the relay passes to New.
var relayLabels = metrics.Labels{
	LoginResults:   strings.Fields("ok repeat taken reserved invalid full other_name"),
	BroadcastKinds: strings.Fields("chat join leave notice"),
	DropReasons: strings.Fields("empty oversize bad_utf8 unknown_verb malformed not_logged_in " +
		"impersonation control_chars queue_full sender_queue panic shutdown"),
	ModerationActions: strings.Fields("notice kick ban unban mute unmute lockdown topic"),
}

func newRelay(t *testing.T) (*prometheus.Registry, *metrics.Relay) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return reg, metrics.New(reg, relayLabels)
}

// value returns the counter or gauge value of the series name{labels...}
// (labels as name, value pairs) and whether that series exists.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if len(got) != len(want) {
				continue
			}
			match := true
			for k, v := range want {
				if got[k] != v {
					match = false
				}
			}
			if match {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func TestEverySeriesExistsAtZero(t *testing.T) {
	reg, _ := newRelay(t)
	tests := []struct {
		name, label string
		values      []string
	}{
		{"chatrelay_logins_total", "result", relayLabels.LoginResults},
		{"chatrelay_broadcasts_total", "kind", relayLabels.BroadcastKinds},
		{"chatrelay_datagrams_dropped_total", "reason", relayLabels.DropReasons},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := testutil.GatherAndCount(reg, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if want := len(tc.values) + 1; n != want {
				t.Errorf("%d series, want %d (the set plus %q)", n, want, metrics.Other)
			}
			for _, v := range append(tc.values, metrics.Other) {
				if got, ok := value(t, reg, tc.name, tc.label, v); !ok || got != 0 {
					t.Errorf("%s{%s=%q} = %v (exists %v), want 0", tc.name, tc.label, v, got, ok)
				}
			}
		})
	}
	for _, name := range []string{
		"chatrelay_datagrams_received_total", "chatrelay_deliveries_total", "chatrelay_event_deliveries_total",
		"chatrelay_send_errors_total", "chatrelay_read_errors_total", "chatrelay_members",
		"chatrelay_pool_rejections_total", "chatrelay_pool_queued", "chatrelay_panics_total",
	} {
		if got, ok := value(t, reg, name); !ok || got != 0 {
			t.Errorf("%s = %v (exists %v), want 0", name, got, ok)
		}
	}
}

func TestMethodsMoveTheirSeries(t *testing.T) {
	tests := []struct {
		do     func(r *metrics.Relay)
		name   string
		labels []string
		want   float64
	}{
		{func(r *metrics.Relay) { r.DatagramReceived(); r.DatagramReceived() }, "chatrelay_datagrams_received_total", nil, 2},
		{func(r *metrics.Relay) { r.DatagramDropped("oversize") }, "chatrelay_datagrams_dropped_total", []string{"reason", "oversize"}, 1},
		{func(r *metrics.Relay) { r.Login("ok"); r.Login("ok"); r.Login("taken") }, "chatrelay_logins_total", []string{"result", "ok"}, 2},
		{func(r *metrics.Relay) { r.Broadcast("chat") }, "chatrelay_broadcasts_total", []string{"kind", "chat"}, 1},
		{func(r *metrics.Relay) { r.Delivered(5); r.Delivered(3) }, "chatrelay_deliveries_total", nil, 8},
		{func(r *metrics.Relay) { r.Delivered(2); r.Delivered(0); r.Delivered(-4) }, "chatrelay_deliveries_total", nil, 2},
		{func(r *metrics.Relay) { r.EventsDelivered(40); r.EventsDelivered(-1) }, "chatrelay_event_deliveries_total", nil, 40},
		{func(r *metrics.Relay) { r.SendError() }, "chatrelay_send_errors_total", nil, 1},
		{func(r *metrics.Relay) { r.ReadError() }, "chatrelay_read_errors_total", nil, 1},
		{func(r *metrics.Relay) { r.Members(7); r.Members(4) }, "chatrelay_members", nil, 4},
		{func(r *metrics.Relay) { r.PoolRejected() }, "chatrelay_pool_rejections_total", nil, 1},
		{func(r *metrics.Relay) { r.Queued(9); r.Queued(3) }, "chatrelay_pool_queued", nil, 3},
		{func(r *metrics.Relay) { r.Panic() }, "chatrelay_panics_total", nil, 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, r := newRelay(t)
			tc.do(r)
			if got, ok := value(t, reg, tc.name, tc.labels...); !ok || got != tc.want {
				t.Errorf("Test %d: %s%v = %v (exists %v), want %v", i, tc.name, tc.labels, got, ok, tc.want)
			}
		})
	}
}

func TestHandlerDoneHistogram(t *testing.T) {
	reg, r := newRelay(t)
	r.HandlerDone(3e-6)   // first bucket (≤5µs)
	r.HandlerDone(100e-6) // ≤320µs
	r.HandlerDone(2)      // above the last bucket
	want := `
# HELP chatrelay_handler_duration_seconds Histogram of the time (in seconds) each datagram handler took.
# TYPE chatrelay_handler_duration_seconds histogram
chatrelay_handler_duration_seconds_bucket{le="5e-06"} 1
chatrelay_handler_duration_seconds_bucket{le="2e-05"} 1
chatrelay_handler_duration_seconds_bucket{le="8e-05"} 1
chatrelay_handler_duration_seconds_bucket{le="0.00032"} 2
chatrelay_handler_duration_seconds_bucket{le="0.00128"} 2
chatrelay_handler_duration_seconds_bucket{le="0.00512"} 2
chatrelay_handler_duration_seconds_bucket{le="0.02048"} 2
chatrelay_handler_duration_seconds_bucket{le="0.08192"} 2
chatrelay_handler_duration_seconds_bucket{le="0.32768"} 2
chatrelay_handler_duration_seconds_bucket{le="1.31072"} 2
chatrelay_handler_duration_seconds_bucket{le="+Inf"} 3
chatrelay_handler_duration_seconds_sum 2.000103
chatrelay_handler_duration_seconds_count 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "chatrelay_handler_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestUnknownLabelValueCountsAsOther(t *testing.T) {
	reg, r := newRelay(t)
	r.Login("bogus")
	r.Login("")
	r.Broadcast("x")
	r.DatagramDropped("some\xffthing") // not even valid UTF-8
	r.DatagramDropped("other")

	checks := []struct {
		name, label string
		want        float64
		series      int
	}{
		{"chatrelay_logins_total", "result", 2, len(relayLabels.LoginResults) + 1},
		{"chatrelay_broadcasts_total", "kind", 1, len(relayLabels.BroadcastKinds) + 1},
		{"chatrelay_datagrams_dropped_total", "reason", 2, len(relayLabels.DropReasons) + 1},
	}
	for _, c := range checks {
		if got, _ := value(t, reg, c.name, c.label, metrics.Other); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, metrics.Other, got, c.want)
		}
		if n, err := testutil.GatherAndCount(reg, c.name); err != nil || n != c.series {
			t.Errorf("%s has %d series (err %v), want %d: no new series", c.name, n, err, c.series)
		}
	}
	if got, _ := value(t, reg, "chatrelay_logins_total", "result", "ok"); got != 0 {
		t.Errorf(`logins_total{result="ok"} = %v, want 0`, got)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	_, r := newRelay(t)
	allocs := testing.AllocsPerRun(100, func() {
		r.DatagramReceived()
		r.DatagramDropped("malformed")
		r.DatagramDropped("unlisted")
		r.Login("ok")
		r.Broadcast("chat")
		r.Delivered(3)
		r.SendError()
		r.ReadError()
		r.Members(10)
		r.PoolRejected()
		r.Queued(2)
		r.Panic()
		r.HandlerDone(1e-4)
	})
	if allocs != 0 {
		t.Errorf("observer methods allocate %v times per round, want 0", allocs)
	}
}

type fakePool struct{ running, capacity atomic.Int64 }

func (p *fakePool) Running() int { return int(p.running.Load()) }
func (p *fakePool) Cap() int     { return int(p.capacity.Load()) }

func TestRegisterPool(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := &fakePool{}
	p.capacity.Store(64)
	if err := metrics.RegisterPool(reg, p); err != nil {
		t.Fatalf("RegisterPool: %v", err)
	}
	p.running.Store(3)
	if got, _ := value(t, reg, "chatrelay_pool_running"); got != 3 {
		t.Errorf("pool_running = %v, want 3", got)
	}
	p.running.Store(5)
	if got, _ := value(t, reg, "chatrelay_pool_running"); got != 5 {
		t.Errorf("pool_running after change = %v, want 5", got)
	}
	if got, _ := value(t, reg, "chatrelay_pool_capacity"); got != 64 {
		t.Errorf("pool_capacity = %v, want 64", got)
	}
	if err := metrics.RegisterPool(reg, p); err == nil {
		t.Error("second RegisterPool on one registry succeeded, want error")
	}
}

func TestRegisterPoolFailureLeavesNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "chatrelay_pool_capacity", Help: "Number of squatters."}))
	if err := metrics.RegisterPool(reg, &fakePool{}); err == nil {
		t.Fatal("RegisterPool succeeded despite a taken name")
	}
	if _, ok := value(t, reg, "chatrelay_pool_running"); ok {
		t.Error("chatrelay_pool_running stayed registered after RegisterPool failed")
	}
}

func TestRegisterBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterBuildInfo(reg, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("Gather = %v, %v; want one series", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, lp := range m.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	if mfs[0].GetName() != "chatrelay_build_info" || m.GetGauge().GetValue() != 1 ||
		labels["version"] != "v1.2.3" || !strings.HasPrefix(labels["goversion"], "go") {
		t.Errorf("build info = %s %v = %v", mfs[0].GetName(), labels, m.GetGauge().GetValue())
	}
}

func TestLint(t *testing.T) {
	reg, r := newRelay(t)
	if err := metrics.RegisterPool(reg, &fakePool{}); err != nil {
		t.Fatal(err)
	}
	if err := metrics.RegisterBuildInfo(reg, "test"); err != nil {
		t.Fatal(err)
	}
	if err := metrics.RegisterRuntime(reg); err != nil {
		t.Fatal(err)
	}
	_ = metrics.Handler(reg) // registers promhttp_metric_handler_errors_total

	problems, err := testutil.CollectAndLint(r)
	if err != nil {
		t.Fatalf("CollectAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("Relay: %s: %s", p.Metric, p.Text)
	}
	problems, err = testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("GatherAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("registry: %s: %s", p.Metric, p.Text)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "promhttp_metric_handler_errors_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s missing from registry (err %v)", name, err)
		}
	}
}

func TestNewPanicsOnDuplicateRegistration(t *testing.T) {
	reg, _ := newRelay(t)
	defer func() {
		if recover() == nil {
			t.Error("second New on one registry did not panic")
		}
	}()
	metrics.New(reg, relayLabels)
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	reg, r := newRelay(t)
	r.Login("ok")
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	c := srv.Client()

	code, body := get(t, c, srv.URL+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, `chatrelay_logins_total{result="ok"} 1`+"\n") {
		t.Errorf("/metrics = %d, want 200 with logins_total{result=\"ok\"} 1; body:\n%s", code, body)
	}
	if !strings.Contains(body, `chatrelay_logins_total{result="full"} 0`+"\n") {
		t.Error("/metrics lacks the zero series for result=\"full\"")
	}
	if code, body := get(t, c, srv.URL+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, _ := get(t, c, srv.URL+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/healthz"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- metrics.Serve(ctx, ln, metrics.Handler(prometheus.NewRegistry())) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if code, body := get(t, c, url); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q, want 200 ok", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	tr.CloseIdleConnections()
	if resp, err := c.Get(url); err == nil {
		resp.Body.Close()
		t.Error("server still answers after Serve returned")
	}
}

func TestServeReportsListenerFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	done := make(chan error, 1)
	go func() { done <- metrics.Serve(context.Background(), ln, http.NotFoundHandler()) }()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve on a closed listener = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve on a closed listener did not return")
	}
}
