package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/chatrelay/chatrelay/relay/client"
	rjs "github.com/chatrelay/chatrelay/relay/jetstream"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// natsAccount is the account of clients when the servers configure none
// (nats-server's global account).
const natsAccount = "$G"

// natsCluster is JetStream nats-servers routed to each other in this
// process, on loopback, for tests that lose one of them.
type natsCluster struct {
	t       *testing.T
	opts    []*server.Options
	servers []*server.Server
}

// startNATSCluster starts n servers of one cluster (each with its own
// store, a random client port and a cluster port chosen free, routes to
// all), shut down when the test ends, and waits until JetStream can place
// a stream with n replicas.
func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, opts: make([]*server.Options, n), servers: make([]*server.Server, n)}
	routes := make([]string, n)
	ports := make([]int, n)
	for i := range n {
		addr := freeLoopbackPort(t)
		routes[i] = "nats://" + addr
		_, p, _ := net.SplitHostPort(addr)
		ports[i], _ = strconv.Atoi(p)
	}
	for i := range n {
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("nats-%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "chatrelay-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")), // its own is ignored
			NoLog:      true,
			NoSigs:     true,
		}
		c.start(i)
	}
	// The cluster is formed when the meta group has a leader and JetStream
	// accepts a stream on every server.
	nc, jsc := c.connect(t)
	defer nc.Close()
	waitUntil(t, 30*time.Second, "a JetStream stream with 3 replicas", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := jsc.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: n, Storage: jetstream.MemoryStorage})
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := jsc.DeleteStream(ctx, "PROBE"); err != nil {
		t.Fatal(err)
	}
	return c
}

// start (or starts again) server i with its options.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	ns := runNATS(c.t, c.opts[i])
	c.servers[i] = ns
	// Started again: on the same client port, which the relays know.
	c.opts[i].Port = ns.Addr().(*net.TCPAddr).Port
}

// kill shuts server i down (its store stays).
func (c *natsCluster) kill(i int) {
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
}

// urls returns every server's client URL, comma-separated, as --nats takes
// them.
func (c *natsCluster) urls() string {
	var urls []string
	for _, ns := range c.servers {
		urls = append(urls, ns.ClientURL())
	}
	return strings.Join(urls, ",")
}

// connect opens a client connection to the cluster until the test ends.
func (c *natsCluster) connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	jsc, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return nc, jsc
}

// relaysOn returns the relays' nodes (NATS connection names without the
// "chatrelay " prefix) connected to server i now.
func (c *natsCluster) relaysOn(i int) []string {
	c.t.Helper()
	cz, err := c.servers[i].Connz(&server.ConnzOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	var nodes []string
	for _, ci := range cz.Conns {
		if node, ok := strings.CutPrefix(ci.Name, "chatrelay "); ok {
			nodes = append(nodes, node)
		}
	}
	return nodes
}

// streamLeader returns the index of the server that leads stream, or -1.
func (c *natsCluster) streamLeader(stream string) int {
	for i, ns := range c.servers {
		if ns.Running() && ns.JetStreamIsStreamLeader(natsAccount, stream) {
			return i
		}
	}
	return -1
}

// metaLeader returns the index of the JetStream meta leader, or -1.
func (c *natsCluster) metaLeader() int {
	for i, ns := range c.servers {
		if ns.Running() && ns.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// moveLeader asks stream's leader to step down in favour of server i, until
// i leads it.
func (c *natsCluster) moveLeader(nc *nats.Conn, stream string, i int) {
	c.t.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": c.opts[i].ServerName}})
	waitUntil(c.t, 20*time.Second, stream+"'s leader to move to "+c.opts[i].ServerName, func() bool {
		if c.servers[i].JetStreamIsStreamLeader(natsAccount, stream) {
			return true
		}
		if c.streamLeader(stream) >= 0 { // not while it elects one
			nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 2*time.Second)
		}
		return false
	})
}

// localState returns what server i holds of stream.
func (c *natsCluster) localState(i int, stream string) (server.StreamState, bool) {
	jsz, err := c.servers[i].Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return server.StreamState{}, false
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == stream {
				return s.State, true
			}
		}
	}
	return server.StreamState{}, false
}

// waitUntil polls cond every 20 ms until it holds, and fails the test if it
// does not within d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// healthz returns the status of d's /healthz (0 if it does not answer).
func healthz(d *daemon) int {
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + d.l.Metrics.String() + "/healthz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// metricValue returns the value of series (name and labels, as exposed) on
// d's /metrics; 0 if it is not there.
func metricValue(t *testing.T, d *daemon, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.l.Metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(grepPrefix(string(b), series+" "))
	if line == "" {
		return 0
	}
	v, err := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return v
}

// classicLogin logs name in at addr from a fresh socket and returns the
// relay's answer ("" if none within wait); an OK session is quit at once.
func classicLogin(addr net.Addr, name string, wait time.Duration) string {
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		return ""
	}
	defer c.Close()
	c.Write([]byte("L " + name))
	c.SetReadDeadline(time.Now().Add(wait))
	b := make([]byte, 512)
	n, err := c.Read(b)
	if err != nil {
		return ""
	}
	if string(b[:n]) == "OK" {
		c.Write([]byte("Q " + name))
	}
	return string(b[:n])
}

// startLoggedNodes is startNodes with each relay's log (info and above)
// shown if the test fails.
func startLoggedNodes(t *testing.T, url string, n int, opt func(*Options)) []*daemon {
	t.Helper()
	nodes := make([]*daemon, n)
	for i := range nodes {
		o := nodeOptions(t, url, i, opt)
		var buf syncBuffer
		log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.InfoLevel))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s's log:\n%s", o.Node, buf.String())
			}
		})
		nodes[i] = startWith(t, func(ctx context.Context, onReady func(listeners)) error {
			return serve(ctx, o, log, onReady)
		})
	}
	return nodes
}

// chatRecord is what a v2 member saw of one chat.
type chatRecord struct {
	seq   uint64
	epoch string
	from  string
	text  string
}

// watcher collects a v2 member's chats (and what should not happen) until
// its session is closed.
type watcher struct {
	name string

	mu     sync.Mutex // protects the fields below
	chats  []chatRecord
	at     []time.Time // when each chat came
	texts  map[string]int
	busy   int            // chats refused for now (unavailable): the client sends them again
	errors []client.Event // other refusals
	bad    []client.Event // missed, restarted, new session, ended
}

func watch(c *client.Client, wg *sync.WaitGroup) *watcher {
	w := &watcher{name: c.Name(), texts: map[string]int{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range c.Events() {
			w.mu.Lock()
			switch e.Type {
			case client.EventChat:
				if !e.History {
					w.chats = append(w.chats, chatRecord{e.Seq, e.Epoch, e.From, e.Text})
					w.at = append(w.at, time.Now())
					w.texts[e.Text]++
				}
			case client.EventError:
				if e.Code == wire.CodeUnavailable {
					w.busy++
				} else {
					w.errors = append(w.errors, e)
				}
			case client.EventMissed, client.EventRestarted, client.EventRestarting, client.EventNewSession:
				w.bad = append(w.bad, e)
			case client.EventEnded:
				if e.Err != nil && !strings.Contains(e.Err.Error(), "closed") {
					w.bad = append(w.bad, e)
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// has reports whether w saw every one of texts.
func (w *watcher) has(texts ...string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range texts {
		if w.texts[s] == 0 {
			return false
		}
	}
	return true
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.chats)
}

// longestGap returns the longest time between two chats w saw after since.
func (w *watcher) longestGap(since time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	prev := since
	for _, at := range w.at {
		if at.Before(since) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap
}

// A three-server NATS cluster (JetStream, 3 replicas) loses one server in
// the middle of a chat: the server that leads the main room's stream and
// that relays are connected to. The relays keep serving: those connected to
// it reconnect to another server (/healthz is 200 again), every v2 member
// gets every chat exactly once, in one order (the same seqs on every
// node), new logins succeed on every relay, and a classic chat is either
// delivered or refused with a line to its sender and counted, never lost
// silently. The server then comes back and catches up.
func TestNATSClusterLosesOneServer(t *testing.T) {
	cl := startNATSCluster(t, 3)
	nodes := startLoggedNodes(t, cl.urls(), 3, func(o *Options) { o.NATSReplicas = 3 })
	nc, _ := cl.connect(t)
	defer nc.Close()

	// The victim: the server with the most relays on it, made leader of
	// the main room's stream.
	logs, err := rjs.NewLogs(nil, rjs.LogOptions{History: 1})
	if err != nil {
		t.Fatal(err)
	}
	mainStream, _ := logs.StreamName(wire.RoomMain)
	victim, onVictim := 0, []string(nil)
	for i := range cl.servers {
		if on := cl.relaysOn(i); len(on) > len(onVictim) {
			victim, onVictim = i, on
		}
	}
	if len(onVictim) == 0 {
		t.Fatal("no relay is connected to any server")
	}
	cl.moveLeader(nc, mainStream, victim)
	nodeIndex := func(node string) int { n, _ := strconv.Atoi(strings.TrimPrefix(node, "node-")); return n - 1 }
	daveNode := nodeIndex(onVictim[0])
	t.Logf("victim %s: relays %v connected to it, leads %s: yes, meta leader: %v",
		cl.opts[victim].ServerName, onVictim, mainStream, cl.metaLeader() == victim)

	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the sessions are closed (cleanups run last first)
	// alice, bob and carol chat, one on each relay; erin, frank and grace
	// only listen, one on each relay too: they get other nodes' chats only
	// through their relay's follower of the room (a sender also repairs
	// from its own chats' seqs).
	names := []string{"alice", "bob", "carol"}
	members := make([]*client.Client, 3)
	var watchers []*watcher
	for i, name := range names {
		members[i] = dialV2(t, nodes[i], name)
		watchers = append(watchers, watch(members[i], &wg))
	}
	for i, name := range []string{"erin", "frank", "grace"} {
		watchers = append(watchers, watch(dialV2(t, nodes[i], name), &wg))
	}
	// dave, classic, is on a relay connected to the victim.
	dave := nodes[daveNode].join(t, "dave")
	const refusal = "the relay cannot reach its store: try again shortly"
	var (
		daveMu       sync.Mutex
		daveRefusals int
		refusedAt    []time.Time
	)
	dave.c.SetReadDeadline(time.Time{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, err := dave.c.Read(buf)
			if err != nil {
				return // closed when the test ends
			}
			if string(buf[:n]) == refusal {
				daveMu.Lock()
				daveRefusals++
				refusedAt = append(refusedAt, time.Now())
				daveMu.Unlock()
			}
		}
	}()
	refusals := func() int { daveMu.Lock(); defer daveMu.Unlock(); return daveRefusals }

	// Everyone chats at a steady pace; the server dies a quarter of the
	// way in.
	const per = 80
	var want []string
	sending := sync.WaitGroup{}
	for i, c := range members {
		sending.Add(1)
		go func() {
			defer sending.Done()
			for k := range per {
				if _, err := c.Send(fmt.Sprintf("%s %d", names[i], k)); err != nil {
					t.Errorf("%s: %v", names[i], err)
					return
				}
				time.Sleep(40 * time.Millisecond)
			}
		}()
		for k := range per {
			want = append(want, fmt.Sprintf("%s %d", names[i], k))
		}
	}
	var daveSent []string
	sending.Add(1)
	go func() {
		defer sending.Done()
		for k := range per {
			text := fmt.Sprintf("dave %d", k)
			if _, err := dave.c.Write([]byte("C dave " + text)); err != nil {
				t.Errorf("dave: %v", err)
				return
			}
			daveSent = append(daveSent, text)
			time.Sleep(40 * time.Millisecond)
		}
	}()

	waitUntil(t, 20*time.Second, "the first chats", func() bool { return watchers[0].count() >= per/2 })

	// /healthz of every relay, watched from just before the kill.
	type health struct {
		first503, last503 time.Time
	}
	healthOf := make([]health, len(nodes))
	var healthMu sync.Mutex
	stopHealth := make(chan struct{})
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		for {
			for i, d := range nodes {
				if code := healthz(d); code != http.StatusOK {
					now := time.Now()
					healthMu.Lock()
					if healthOf[i].first503.IsZero() {
						healthOf[i].first503 = now
					}
					healthOf[i].last503 = now
					healthMu.Unlock()
				}
			}
			select {
			case <-stopHealth:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	defer func() {
		select {
		case <-stopHealth:
		default:
			close(stopHealth)
		}
		<-healthDone
	}()

	killed := time.Now()
	cl.kill(victim)
	t.Logf("%s killed with %d chats seen by alice", cl.opts[victim].ServerName, watchers[0].count())

	// New logins: every relay accepts one again, soon.
	loginAfter := make([]time.Duration, len(nodes))
	var logins sync.WaitGroup
	for i, d := range nodes {
		logins.Add(1)
		go func() {
			defer logins.Done()
			deadline := time.Now().Add(40 * time.Second)
			for k := 0; time.Now().Before(deadline); k++ {
				// A new name each time: an answer that came after we gave
				// up would hold the last one.
				if classicLogin(d.l.UDP, fmt.Sprintf("probe%d-%d", i+1, k), 6*time.Second) == "OK" {
					loginAfter[i] = time.Since(killed)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	logins.Wait()
	for i, d := range loginAfter {
		if d == 0 {
			t.Fatalf("node-%d: no login succeeded within 40 s after the server died", i+1)
		}
	}
	waitUntil(t, 30*time.Second, "every relay's /healthz to answer 200", func() bool {
		for _, d := range nodes {
			if healthz(d) != http.StatusOK {
				return false
			}
		}
		return true
	})
	sending.Wait()
	recovered := time.Since(killed)

	// A v2 login on every relay, and its chat reaches everyone.
	for i, d := range nodes {
		name := fmt.Sprintf("late%d", i+1)
		var late *client.Client
		waitUntil(t, 20*time.Second, name+"'s v2 login on node-"+strconv.Itoa(i+1), func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, client.Config{Addr: d.l.UDP.String(), Name: name, Rand: rand.New(rand.NewPCG(uint64(i), 2))})
			if err != nil {
				return false
			}
			late = c
			return true
		})
		t.Cleanup(func() { closeV2(late) })
		text := "hello from " + name
		if _, err := late.Send(text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	// dave's last chat after the failover: stored (or refused, and sent
	// again as a user would). First every chat he sent has its outcome, so
	// that a refusal that comes now is this one's.
	outcomes := func() int {
		n := refusals()
		for _, text := range daveSent {
			if watchers[0].has(text) {
				n++
			}
		}
		return n
	}
	waitUntil(t, 20*time.Second, "an outcome for each of dave's chats", func() bool { return outcomes() >= len(daveSent) })
	var daveFinal string
	waitUntil(t, 30*time.Second, "dave's last chat to be stored", func() bool {
		before := refusals()
		daveFinal = fmt.Sprintf("dave final %d", len(daveSent))
		dave.send("C dave " + daveFinal)
		daveSent = append(daveSent, daveFinal)
		deadline := time.Now().Add(7 * time.Second)
		for time.Now().Before(deadline) {
			if watchers[0].has(daveFinal) {
				return true
			}
			if refusals() > before {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})

	for _, w := range watchers {
		deadline := time.Now().Add(30 * time.Second)
		for !w.has(append(want, daveFinal)...) {
			if time.Now().After(deadline) {
				w.mu.Lock()
				var missing []string
				for _, text := range append(want, daveFinal) {
					if w.texts[text] == 0 {
						missing = append(missing, text)
					}
				}
				var lastSeq uint64
				if len(w.chats) > 0 {
					lastSeq = w.chats[len(w.chats)-1].seq
				}
				t.Errorf("%s saw %d chats (the last seq %d), not %q; told %+v", w.name, len(w.chats), lastSeq, missing, w.bad)
				w.mu.Unlock()
				for i, d := range nodes {
					t.Logf("node-%d: chatrelay_log_lag_events %v", i+1, metricValue(t, d, "chatrelay_log_lag_events"))
				}
				t.FailNow()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stopHealth)
	<-healthDone

	// Exactly once, in one order: alice's chats, to the last of dave's,
	// are everyone's.
	for _, w := range watchers {
		w.mu.Lock()
		if len(w.bad) > 0 {
			t.Errorf("%s was told %+v", w.name, w.bad)
		}
		if len(w.errors) > 0 {
			t.Errorf("%s's chats were refused: %+v", w.name, w.errors)
		}
		for text, n := range w.texts {
			if n > 1 {
				t.Errorf("%s saw %q %d times", w.name, text, n)
			}
		}
		w.mu.Unlock()
	}
	// The sessions go on (late joins), but every chat is in by now.
	chatsOf := func(w *watcher) []chatRecord {
		w.mu.Lock()
		defer w.mu.Unlock()
		return append([]chatRecord(nil), w.chats...)
	}
	a := chatsOf(watchers[0])
	last := 0
	for k, c := range a {
		if k > 0 && c.seq <= a[k-1].seq {
			t.Fatalf("alice's chats out of order: seq %d after %d", c.seq, a[k-1].seq)
		}
		if c.text == daveFinal {
			last = k
		}
	}
	for _, w := range watchers[1:] {
		chats := chatsOf(w)
		if len(chats) < last+1 {
			t.Fatalf("%s saw %d chats, alice %d up to dave's last", w.name, len(chats), last+1)
		}
		for k := range last + 1 {
			if chats[k] != a[k] {
				t.Fatalf("chat %d: %s saw %+v, alice %+v: not one order", k, w.name, chats[k], a[k])
			}
		}
	}
	// dave's chats: each delivered, or refused with a line to him; the
	// refusals counted by his relay.
	delivered := 0
	for _, text := range daveSent {
		if watchers[0].has(text) {
			delivered++
		}
	}
	daveRefused := refusals()
	var undelivered []string
	for _, text := range daveSent {
		if !watchers[0].has(text) {
			undelivered = append(undelivered, text)
		}
	}
	daveMu.Lock()
	var refusedAfter []time.Duration
	for _, at := range refusedAt {
		refusedAfter = append(refusedAfter, at.Sub(killed).Round(time.Millisecond))
	}
	daveMu.Unlock()
	if lost := len(daveSent) - delivered; lost > daveRefused {
		t.Errorf("dave sent %d chats: %d delivered, %d refused: %d lost silently", len(daveSent), delivered, daveRefused, lost-daveRefused)
	}
	dropped := metricValue(t, nodes[daveNode], `chatrelay_datagrams_dropped_total{reason="store_unavailable"}`)
	if dropped < float64(daveRefused) {
		t.Errorf("dave was refused %d chats, his relay counted %v", daveRefused, dropped)
	}

	busy := 0
	for _, w := range watchers {
		busy += w.busy
	}
	var outage []string
	for i, h := range healthOf {
		if !h.first503.IsZero() {
			outage = append(outage, fmt.Sprintf("node-%d %v..%v", i+1, h.first503.Sub(killed).Round(time.Millisecond), h.last503.Sub(killed).Round(time.Millisecond)))
		}
	}
	gaps := make([]string, len(watchers))
	for i, w := range watchers {
		gaps[i] = fmt.Sprintf("%s %v", w.name, w.longestGap(killed).Round(time.Millisecond))
	}
	t.Logf("after the kill: /healthz not 200: %v; first login OK per node: %v; all healthy and senders done at %v; longest pause in chats: %v",
		outage, loginAfter, recovered.Round(time.Millisecond), gaps)
	t.Logf("v2 chats refused for now and sent again: %d (told once each); dave's classic chats: %d sent, %d delivered, %d refused (%v after the kill; not delivered: %q); node-%d counted %v store_unavailable drops",
		busy, len(daveSent), delivered, daveRefused, refusedAfter, undelivered, daveNode+1, dropped)

	// The server comes back and catches up with the main room.
	cl.start(victim)
	waitUntil(t, 30*time.Second, cl.opts[victim].ServerName+" to catch up with "+mainStream, func() bool {
		got, ok := cl.localState(victim, mainStream)
		leader := cl.streamLeader(mainStream)
		if !ok || leader < 0 {
			return false
		}
		lead, ok := cl.localState(leader, mainStream)
		return ok && got.LastSeq == lead.LastSeq && got.Msgs == lead.Msgs
	})
	t.Logf("%s back after %v, caught up", cl.opts[victim].ServerName, time.Since(killed).Round(time.Millisecond))
}
