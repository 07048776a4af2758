//go:build linux

package main

// The nodes scenario (issue 10): what a room costs when two relays share
// it over NATS JetStream (--nats), against one relay on the same kind of
// server, with the relay in memory and with --data-dir beside them as
// references. In one run, four set-ups hold the room (v2 members of
// revision 0, as chatrelay-v2-durable's; --proto classic: classic ones):
//
//	chatrelay-v2          in memory (no flag)
//	chatrelay-v2-durable  --data-dir, its own embedded JetStream
//	chatrelay-v2-1node    --nats on a nats-server of its own, every member on it
//	chatrelay-v2-2nodes   two relays with --nats on one nats-server, the
//	                      members dealt out in turn (member i on relay i%2),
//	                      so the room and its senders are split 50/50
//
// The nats-server is relaybench itself as a child process (--serve-ref
// jetstream: the nats reference's embedded server with JetStream on, in a
// fresh directory), so its CPU is read apart from the relays' and from
// the load tool's. Two phases, each with fresh set-ups: latency (20
// members, 4 senders, 200 chats/s for 3 s, as the latency scenario) and
// the room100 ladder (1.5 s steps). Within a phase the four set-ups are up
// together and take turns step by step, as rooms1000's shapes do, so each
// offered rate meets the same machine. The verdict compares the relays'
// CPU per delivery of two nodes (both relays' CPU added) with one node's at
// the highest offered rate both sustained.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const (
	nodesScenario = "nodes2"
	// nodesCPULimit is the target: a room split across two nodes
	// costs at most 1.5 times one node's relay CPU per delivery.
	nodesCPULimit = 1.5
	// nodesTimeLimit is --time-limit's default for nodes2: steps that would
	// start later are skipped and listed.
	nodesTimeLimit = 4 * time.Minute
	// serveJetStream is --serve-ref's value for the nats-server that the
	// --nats relays of a set-up share.
	serveJetStream = "jetstream"
	// The latency phase, as the latency scenario.
	nodesLatencyMembers = 20
	nodesLatencyRate    = 200
	nodesLatencyStep    = 3 * time.Second
	nodesLadderStep     = 1500 * time.Millisecond
)

// nodesConfig is what --nodes-* (and --proto) set.
type nodesConfig struct {
	Members    int   // the ladder's room
	Deliveries []int // offered deliveries/s the ladder climbs
	Proto      Proto // ProtoV2 (default) or ProtoClassic
}

func defineNodesFlags(fs *flag.FlagSet, n *nodesConfig) {
	fs.IntVar(&n.Members, "nodes-members", 100, "nodes2: members in the ladder's room (the latency phase has 20)")
	fs.Func("nodes-deliveries", "nodes2: comma-separated offered `deliveries/s` of the ladder (default the room ladder, 50000 … 4300000)", func(v string) error {
		n.Deliveries = nil
		for _, f := range strings.Split(v, ",") {
			d, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || d < 1 || d > 100_000_000 {
				return fmt.Errorf("bad rate %q", f)
			}
			n.Deliveries = append(n.Deliveries, d)
		}
		return nil
	})
}

// nodesRefused are the flags that mean nothing to nodes2: it picks its
// relays, rooms and rates itself.
var nodesRefused = []string{"relays", "members", "senders", "rate", "rates", "plot"}

// checkNodesFlags runs after the flags are parsed, as checkRoomsFlags does;
// --proto says what the members speak (v2 unless given).
func checkNodesFlags(fs *flag.FlagSet, c *config) error {
	if ok, err := scenarioFlags(fs, c, "nodes-", nodesScenario, nodesRefused, "it runs its own four set-ups; see --nodes-* and --proto"); !ok || err != nil {
		return err
	}
	n := &c.nodes
	n.Proto = ProtoV2
	if f := fs.Lookup("proto"); f != nil {
		set := false
		fs.Visit(func(v *flag.Flag) { set = set || v.Name == "proto" })
		switch v := f.Value.String(); {
		case !set || v == "v2":
		case v == "classic":
			n.Proto = ProtoClassic
		default:
			return fmt.Errorf("--proto %q: nodes2 takes v2 or classic", v)
		}
	}
	if n.Deliveries == nil {
		n.Deliveries = deliveryLadder
	}
	if n.Members < 4 || n.Members > 2000 {
		return errors.New("--nodes-members: 4 to 2000")
	}
	return nil
}

// nodesSpec is one set-up of the room.
type nodesSpec struct {
	relay string // its name in the report
	base  string // the relay startRelay starts (one per node)
	nodes int    // relays sharing the room
	nats  bool   // --nats on a nats-server of the set-up's own
}

// nodesSpecs are the four set-ups for members speaking proto.
func nodesSpecs(proto Proto) []nodesSpec {
	mem, durable := relayV2, relayV2Durable
	if proto == ProtoClassic {
		mem, durable = relayClassic, relayDurable
	}
	return []nodesSpec{
		{relay: mem, base: mem, nodes: 1},
		{relay: durable, base: durable, nodes: 1},
		{relay: mem + "-1node", base: mem, nodes: 1, nats: true},
		{relay: mem + "-2nodes", base: mem, nodes: 2, nats: true},
	}
}

// store names where a set-up's rooms live.
func (s nodesSpec) store() string {
	switch {
	case s.nats:
		return "nats"
	case s.base == relayDurable || s.base == relayV2Durable:
		return "data-dir"
	}
	return "memory"
}

// NodesReport is what a nodes2 run measured (Report.Nodes); each phase's
// steps are in Report.Scenarios.
type NodesReport struct {
	Proto   string       `json:"proto"`
	Members int          `json:"ladder_members"`
	Relays  []NodesRelay `json:"relays"`  // the set-ups side by side
	Compare []NodesStep  `json:"compare"` // the ladder's rates both one node and two nodes ran

	// The verdict, at the highest offered rate of the ladder both one node
	// and two nodes sustained: the relays' CPU per delivery (two nodes:
	// both relays' CPU over all deliveries).
	AtRate          int     `json:"verdict_at_offered_chats_per_s"` // 0: none
	AtDeliveries    int     `json:"verdict_at_offered_deliveries_per_s"`
	OneCPU          float64 `json:"one_node_cpu_us_per_delivery"`
	TwoCPU          float64 `json:"two_nodes_cpu_us_per_delivery"`
	Ratio           float64 `json:"cpu_ratio"` // TwoCPU / OneCPU
	OneBrokerCPU    float64 `json:"one_node_nats_server_cpu_us_per_delivery"`
	TwoBrokerCPU    float64 `json:"two_nodes_nats_server_cpu_us_per_delivery"`
	RatioWithBroker float64 `json:"cpu_ratio_with_nats_server"` // relays and nats-server together
	LatencyRatio    float64 `json:"cpu_ratio_latency_step"`     // the same ratio in the latency step
	Pass            bool    `json:"pass"`                       // Ratio <= nodesCPULimit

	// Across: in every step of two nodes, members on each relay got chats
	// sent by members on the other. ByNode adds up those steps' deliveries
	// by [sender's relay][receiver's relay].
	Across bool      `json:"across_nodes"`
	ByNode [][]int64 `json:"two_nodes_deliveries_by_node"`

	Notes []string `json:"notes,omitempty"`
}

// NodesRelay is one set-up's figures in both phases.
type NodesRelay struct {
	Relay string `json:"relay"`
	Store string `json:"store"` // memory, data-dir, nats
	Nodes int    `json:"nodes"`

	// The latency step (20 members, 200 chats/s); CPU in µs per delivery,
	// the nats-server's -1 where there is none of its own.
	LatP50us     float64 `json:"latency_p50_us"`
	LatP99us     float64 `json:"latency_p99_us"`
	LatP999us    float64 `json:"latency_p999_us"`
	LatSustained bool    `json:"latency_sustained"`
	LatCPU       float64 `json:"latency_cpu_us_per_delivery"`
	LatBroker    float64 `json:"latency_nats_server_cpu_us_per_delivery"`

	// The ladder, at its highest sustained step (CPU: else its first).
	SustainedPerS float64 `json:"sustained_deliveries_per_s"` // 0: none
	SustainedRate int     `json:"sustained_offered_chats_per_s"`
	AtLeast       bool    `json:"sustained_is_lower_bound"`
	P99Sustained  float64 `json:"p99_us_at_sustained"`
	CPUSustained  float64 `json:"cpu_us_per_delivery_at_sustained"`
	BrokerSust    float64 `json:"nats_server_cpu_us_per_delivery_at_sustained"`
}

// NodesStep compares one node with two at one offered rate of the ladder.
type NodesStep struct {
	OfferedRate  int     `json:"offered_chats_per_s"`
	OneSustained bool    `json:"one_node_sustained"`
	TwoSustained bool    `json:"two_nodes_sustained"`
	OnePerS      float64 `json:"one_node_deliveries_per_s"`
	TwoPerS      float64 `json:"two_nodes_deliveries_per_s"`
	OneCPU       float64 `json:"one_node_cpu_us_per_delivery"`
	TwoCPU       float64 `json:"two_nodes_cpu_us_per_delivery"`
	Ratio        float64 `json:"cpu_ratio"`
	OneBroker    float64 `json:"one_node_nats_server_cpu_us_per_delivery"`
	TwoBroker    float64 `json:"two_nodes_nats_server_cpu_us_per_delivery"`
}

// nodesSetup is one set-up while a phase runs.
type nodesSetup struct {
	spec   nodesSpec
	relays []*proc
	broker *proc // nil without --nats
	sess   *session
}

// cpu adds up the CPU seconds of the set-up's relays.
func (su *nodesSetup) cpu() (float64, error) {
	var sum float64
	for _, p := range su.relays {
		v, err := p.cpu()
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// gone says which of the set-up's processes has ended, if one has.
func (su *nodesSetup) gone() error {
	for i, p := range su.relays {
		if p.exited() {
			return fmt.Errorf("relay %d of %d exited (%v)", i+1, len(su.relays), p.err)
		}
	}
	if su.broker != nil && su.broker.exited() {
		return fmt.Errorf("the nats-server exited (%v)", su.broker.err)
	}
	return nil
}

// stop closes the members, then stops the relays, then the nats-server.
func (su *nodesSetup) stop() {
	if su.sess != nil {
		su.sess.close()
	}
	for _, p := range su.relays {
		p.stop()
	}
	if su.broker != nil {
		su.broker.stop()
	}
}

// startBroker starts the nats-server of a set-up (JetStream in a fresh
// directory, removed once it stops) on a fresh loopback port.
func (e *env) startBroker() (*proc, string, error) {
	e.starts++
	addr, err := freeTCPPort()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp(e.tmp, fmt.Sprintf("js-%d-", e.starts))
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(e.self, []string{"--serve-ref", serveJetStream, "--listen", addr.String(), "--store-dir", dir}, addr, e.logs, waitNATS)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("nats-server: %w", err)
	}
	p.onStop = func() { os.RemoveAll(dir) }
	return p, "nats://" + addr.String(), nil
}

// startSetup starts spec's processes and logs sc's members in on them.
// On an error what was started is stopped again.
func (e *env) startSetup(spec nodesSpec, sc Scenario) (*nodesSetup, error) {
	su := &nodesSetup{spec: spec}
	url := ""
	if spec.nats {
		b, u, err := e.startBroker()
		if err != nil {
			return nil, err
		}
		su.broker, url = b, u
	}
	var addrs []netip.AddrPort
	var proto Proto
	for k := 0; k < spec.nodes; k++ {
		if spec.nats {
			e.moreArgs = []string{"--nats", url, "--node", fmt.Sprintf("relaybench-%d", k+1)}
		}
		pr, addr, p, err := e.startRelay(spec.base, sc.Budget)
		e.moreArgs = nil
		if err != nil {
			su.stop()
			return nil, fmt.Errorf("relay %d of %d: %w", k+1, spec.nodes, err)
		}
		su.relays = append(su.relays, pr)
		addrs, proto = append(addrs, addr), p
	}
	t0 := time.Now()
	sess, err := dialNodes(proto, addrs, sc)
	if err != nil {
		su.stop()
		return nil, err
	}
	su.sess = sess
	if su.broker != nil {
		su.sess.brokerCPU = su.broker.cpu
	}
	fmt.Fprintf(e.stderr, "relaybench: %s: %s: %d %s members logged in on %d relays in %.1f s\n",
		nodesScenario, spec.relay, sc.Members, proto, spec.nodes, time.Since(t0).Seconds())
	return su, nil
}

// runNodes runs both phases, appending each one's steps to rep.Scenarios,
// and compares one node with two.
func (e *env) runNodes(nc nodesConfig, rep *Report) *NodesReport {
	out := &NodesReport{Proto: nc.Proto.String(), Members: nc.Members}
	specs := nodesSpecs(nc.Proto)
	latDur, ladDur := nodesLatencyStep, nodesLadderStep
	if e.c.durationSet {
		latDur, ladDur = e.c.sc.Duration, e.c.sc.Duration
	}
	sc := e.c.sc
	sc.Members, sc.Senders, sc.Duration = nodesLatencyMembers, 4, latDur
	lat := e.nodesPhase(nodesScenario+"-latency", sc, []int{nodesLatencyRate}, false, specs, out)
	sc.Members, sc.Duration = nc.Members, ladDur
	var rates []int
	for _, d := range nc.Deliveries {
		if r := min(max(d/(nc.Members-1), 1), 1_000_000); len(rates) == 0 || r > rates[len(rates)-1] {
			rates = append(rates, r)
		}
	}
	lad := e.nodesPhase(fmt.Sprintf("%s-room%d", nodesScenario, nc.Members), sc, rates, true, specs, out)
	rep.Scenarios = append(rep.Scenarios, lat, lad)
	compareNodes(out, specs, lat, lad)
	return out
}

// nodesPhase starts every set-up with sc's members, runs rates on them in
// turns (climbInTurns; a ladder: each stops after --stop-after failing
// steps, then runs one step between its best pass and first failure),
// stops them and returns the phase's report, its rows grouped by set-up.
func (e *env) nodesPhase(name string, sc Scenario, rates []int, ladder bool, specs []nodesSpec, out *NodesReport) ScenarioReport {
	sr := ScenarioReport{Name: name, Members: sc.Members, Senders: sc.Senders, DurationS: sc.Duration.Seconds(), Budget: sc.Budget}
	began := time.Now()
	var sus []*nodesSetup
	defer func() {
		for _, su := range sus {
			su.stop()
		}
	}()
	var cs []*climber
	var order []string
	for _, spec := range specs {
		order = append(order, spec.relay)
		su, err := e.startSetup(spec, sc)
		if err != nil {
			e.failed(&sr.Notes, name, spec.relay, err)
			continue
		}
		sus = append(sus, su)
		cs = append(cs, &climber{name: spec.relay, gone: su.gone, run: func(rate int) (Result, error) {
			r, err := su.sess.step(rate, su.cpu)
			if err == nil {
				err = su.gone()
			}
			return r, err
		}})
	}
	e.climbInTurns(name, sc.Duration, cs, rates, ladder, nodesBisect, &sr.Notes)
	for _, c := range cs {
		sr.Results = append(sr.Results, c.rows...)
	}
	sr.Summary = summarize(sr.Results, order)
	sr.elapsed = time.Since(began)
	return sr
}

// nodesBisect is how many steps nodes2's ladder takes between a set-up's
// best pass and first failure: one, as its verdict (compareNodes, at the
// rates both one node and two ran) was written for.
const nodesBisect = 1

// compareNodes fills out from the two phases: each set-up's figures, the
// ladder's rates both one node and two ran, and the verdict.
func compareNodes(out *NodesReport, specs []nodesSpec, lat, lad ScenarioReport) {
	one, two := specs[2].relay, specs[3].relay
	byRate := func(rs []Result, relay string) map[int]Result {
		m := map[int]Result{}
		for _, r := range rs {
			if r.Relay == relay {
				m[r.OfferedRate] = r
			}
		}
		return m
	}
	broker := func(r Result, s nodesSpec) float64 {
		if !s.nats || r.BrokerCPUs < 0 {
			return -1
		}
		return r.BrokerUsPerDel
	}
	for _, s := range specs {
		nr := NodesRelay{Relay: s.relay, Store: s.store(), Nodes: s.nodes, LatCPU: -1, LatBroker: -1, CPUSustained: -1, BrokerSust: -1}
		for _, r := range lat.Results {
			if r.Relay == s.relay {
				nr.LatP50us, nr.LatP99us, nr.LatP999us, nr.LatSustained = r.P50us, r.P99us, r.P999us, r.Sustained
				if r.RelayCPUs >= 0 {
					nr.LatCPU = r.CPUusPerDeliv
				}
				nr.LatBroker = broker(r, s)
			}
		}
		for _, sm := range lad.Summary {
			if sm.Relay != s.relay {
				continue
			}
			nr.SustainedPerS, nr.SustainedRate, nr.AtLeast, nr.P99Sustained, nr.CPUSustained = sm.SustainedPerS, sm.SustainedRate, sm.AtLeast, sm.P99SustainedUs, sm.CPUusPerDeliv
			at := sm.SustainedRate
			if at == 0 {
				at = math.MaxInt
				for _, r := range lad.Results {
					if r.Relay == s.relay {
						at = min(at, r.OfferedRate)
					}
				}
			}
			if r, ok := byRate(lad.Results, s.relay)[at]; ok {
				nr.BrokerSust = broker(r, s)
			}
		}
		out.Relays = append(out.Relays, nr)
	}
	ones, twos := byRate(lad.Results, one), byRate(lad.Results, two)
	for rate, o := range ones {
		t, ok := twos[rate]
		if !ok {
			continue
		}
		c := NodesStep{OfferedRate: rate, OneSustained: o.Sustained, TwoSustained: t.Sustained, OnePerS: o.DeliveriesPerS, TwoPerS: t.DeliveriesPerS,
			OneCPU: o.CPUusPerDeliv, TwoCPU: t.CPUusPerDeliv, OneBroker: broker(o, specs[2]), TwoBroker: broker(t, specs[3])}
		if o.CPUusPerDeliv > 0 && o.RelayCPUs >= 0 && t.RelayCPUs >= 0 {
			c.Ratio = t.CPUusPerDeliv / o.CPUusPerDeliv
		}
		out.Compare = append(out.Compare, c)
	}
	slices.SortFunc(out.Compare, func(a, b NodesStep) int { return a.OfferedRate - b.OfferedRate })
	for _, c := range out.Compare {
		if c.OneSustained && c.TwoSustained && c.Ratio > 0 {
			out.AtRate, out.OneCPU, out.TwoCPU, out.Ratio = c.OfferedRate, c.OneCPU, c.TwoCPU, c.Ratio
			out.AtDeliveries = c.OfferedRate * (out.Members - 1)
			out.OneBrokerCPU, out.TwoBrokerCPU, out.RatioWithBroker = c.OneBroker, c.TwoBroker, 0
			if c.OneBroker >= 0 && c.TwoBroker >= 0 {
				out.RatioWithBroker = (c.TwoCPU + c.TwoBroker) / (c.OneCPU + c.OneBroker)
			}
		}
	}
	if lo, lt := out.Relays[2], out.Relays[3]; lo.LatCPU > 0 && lt.LatCPU > 0 {
		out.LatencyRatio = lt.LatCPU / lo.LatCPU
	}
	// Across: every step of two nodes carried chats both ways.
	steps := 0
	out.Across = true
	for _, rs := range [][]Result{lat.Results, lad.Results} {
		for _, r := range rs {
			if r.Relay != two {
				continue
			}
			steps++
			if len(r.ByNode) != 2 || r.ByNode[0][1] == 0 || r.ByNode[1][0] == 0 {
				out.Across = false
			}
			if out.ByNode == nil {
				out.ByNode = [][]int64{{0, 0}, {0, 0}}
			}
			for i := range min(len(r.ByNode), 2) {
				for j := range min(len(r.ByNode[i]), 2) {
					out.ByNode[i][j] += r.ByNode[i][j]
				}
			}
		}
	}
	if steps == 0 {
		out.Across = false
		out.Notes = append(out.Notes, two+": no step ran")
	}
	out.Pass = out.AtRate > 0 && out.Ratio <= nodesCPULimit
}

// printNodes prints the set-ups side by side, the comparison of one node
// with two, and the verdicts.
func printNodes(w io.Writer, r *NodesReport) {
	fmt.Fprintf(w, "\n== %s: a room on two relays sharing one nats-server (--nats) against one relay on one, and the relay in memory and with --data-dir; %s members, set-ups taking turns\n",
		nodesScenario, r.Proto)
	us := func(v float64) string {
		if v < 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "relay\tstore\trelays\tlatency p50 µs\tp99 µs\tp99.9 µs\tCPU µs/deliv\tnats-server µs/deliv\troom%d sustained deliv/s\t@chats/s\tp99 @sust µs\tCPU µs/deliv\tnats-server µs/deliv\t\n", r.Members)
	for _, n := range r.Relays {
		sust := "none"
		if n.SustainedPerS > 0 {
			sust = fmt.Sprintf("%.0f", n.SustainedPerS)
			if n.AtLeast {
				sust = ">=" + sust
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f%s\t%.0f\t%s\t%s\t%s\t%d\t%.0f\t%s\t%s\t\n", n.Relay, n.Store, n.Nodes,
			n.LatP50us, n.LatP99us, star(n.LatSustained), n.LatP999us, us(n.LatCPU), us(n.LatBroker),
			sust, n.SustainedRate, n.P99Sustained, us(n.CPUSustained), us(n.BrokerSust))
	}
	tw.Flush()
	fmt.Fprintf(w, "latency: %d members, 4 senders, %d chats/s (* = not sustained); room%d: the ladder, figures at the highest sustained step;\n", nodesLatencyMembers, nodesLatencyRate, r.Members)
	fmt.Fprintln(w, "CPU = the relays' (two nodes: both added) per delivery; nats-server = the shared server's process (- : none; --data-dir's is inside the relay)")
	if len(r.Compare) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "offered chats/s\tdeliv/s offered\t1 node deliv/s\t2 nodes deliv/s\t1 node CPU µs/deliv\t2 nodes CPU µs/deliv\t2/1\t1 node nats-server\t2 nodes nats-server\t")
		for _, c := range r.Compare {
			fmt.Fprintf(tw, "%d\t%d\t%.0f%s\t%.0f%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", c.OfferedRate, c.OfferedRate*(r.Members-1),
				c.OnePerS, star(c.OneSustained), c.TwoPerS, star(c.TwoSustained), c.OneCPU, c.TwoCPU, c.Ratio, us(c.OneBroker), us(c.TwoBroker))
		}
		tw.Flush()
		fmt.Fprintln(w, "* = not sustained")
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	across := "no step of two nodes ran"
	if len(r.ByNode) == 2 {
		across = fmt.Sprintf("relay 1 -> relay 2: %d deliveries, relay 2 -> relay 1: %d (within relay 1: %d, within relay 2: %d)",
			r.ByNode[0][1], r.ByNode[1][0], r.ByNode[0][0], r.ByNode[1][1])
	}
	fmt.Fprintf(w, "%s: in every step of two nodes, members on each relay got chats sent on the other: %s\n", passFail(r.Across), across)
	line := fmt.Sprintf("a room split across two nodes costs at most %.1fx one node's relay CPU per delivery: ", nodesCPULimit)
	if r.AtRate == 0 {
		line += "no offered rate was sustained by both"
	} else {
		line += fmt.Sprintf("%.2f vs %.2f µs, ratio %.3f at %d chats/s (%d deliveries/s offered)", r.TwoCPU, r.OneCPU, r.Ratio, r.AtRate, r.AtDeliveries)
		if r.RatioWithBroker > 0 {
			line += fmt.Sprintf("; with the nats-server %.2f vs %.2f µs, ratio %.3f", r.TwoCPU+r.TwoBrokerCPU, r.OneCPU+r.OneBrokerCPU, r.RatioWithBroker)
		}
	}
	if r.LatencyRatio > 0 {
		line += fmt.Sprintf("; latency step ratio %.3f", r.LatencyRatio)
	}
	fmt.Fprintf(w, "%s: %s\n", passFail(r.Pass), line)
}
