//go:build linux

package main

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one invocation measured.
type Report struct {
	Machine   Machine          `json:"machine"`
	Scenarios []ScenarioReport `json:"scenarios"`
	ElapsedS  float64          `json:"elapsed_s"`
	Failures  []string         `json:"failures,omitempty"` // relays that could not finish a scenario
	Storm     *StormReport     `json:"storm,omitempty"`    // --scenario joinstorm
	Rooms     *RoomsReport     `json:"rooms,omitempty"`    // --scenario rooms1000 (its shapes' steps are in Scenarios)
	Nodes     *NodesReport     `json:"nodes,omitempty"`    // --scenario nodes2 (its phases' steps are in Scenarios)
}

// Machine says where the numbers come from.
type Machine struct {
	CPUs    int    `json:"cpus"`
	Kernel  string `json:"kernel"`
	Go      string `json:"go"`
	LoadAvg string `json:"loadavg_at_start"`
}

// ScenarioReport is one scenario's steps and per-relay summary.
type ScenarioReport struct {
	Name       string        `json:"name"`
	Members    int           `json:"members"`
	Senders    int           `json:"senders"`
	Rooms      int           `json:"rooms,omitempty"` // the members are in this many rooms of Members/Rooms (rooms1000)
	DurationS  float64       `json:"step_duration_s"`
	Turns      int           `json:"turns,omitempty"` // each step ran in this many turns of DurationS/Turns, pooled
	Budget     int           `json:"budget_bytes"`
	RefSenders int           `json:"ref_senders,omitempty"`  // sender threads of batch and coalesce
	DerivedOf  string        `json:"derived_from,omitempty"` // the rows are those of that scenario
	Results    []Result      `json:"steps"`
	Summary    []Summary     `json:"summary"`
	Notes      []string      `json:"notes,omitempty"`
	elapsed    time.Duration // for the title
}

// Title is the scenario's heading line.
func (s *ScenarioReport) Title() string {
	members := fmt.Sprintf("%d members", s.Members)
	if s.Rooms > 1 {
		members = fmt.Sprintf("%d members in %d rooms of %d", s.Members, s.Rooms, s.Members/s.Rooms)
	}
	per := fmt.Sprintf("%v per step", time.Duration(s.DurationS*float64(time.Second)))
	if s.Turns > 1 {
		per += fmt.Sprintf(" in %d turns", s.Turns)
	}
	t := fmt.Sprintf("%s: %s, %d senders, %s, budget %d bytes", s.Name, members, s.Senders, per, s.Budget)
	if s.RefSenders > 0 {
		t += fmt.Sprintf(", %d reference senders", s.RefSenders)
	}
	if s.DerivedOf != "" {
		t += " (the rows of " + s.DerivedOf + ")"
	}
	if s.elapsed > 0 {
		t += fmt.Sprintf(", took %.0f s", s.elapsed.Seconds())
	}
	return t
}

// preset is a named scenario.
type preset struct {
	name     string
	members  int
	senders  int
	rates    []int // offered chats/s, in order
	ladder   bool  // climb: a relay stops after --stop-after failing steps, then --bisect steps between its best pass and first failure
	duration time.Duration
	// turns > 1: each step runs as this many turns of duration/turns, the
	// relays all started at once and taking turns (the order reversed every
	// turn), and a relay's turns at a rate are pooled into one row
	// (poolTurns): its deliveries of the whole duration, spread over the
	// same minutes as the others'.
	turns  int
	relays []string
	derive string // take the rows of this (earlier) scenario instead of running
}

// deliveryLadder is the offered deliveries/s that room scenarios climb,
// x1.5 per step: from where every relay keeps up to beyond what this
// machine's coalescing loop sustains (5.4 to 6.4 million and more in
// room100 at 1,200 bytes: with 4.3 million, then 6.4 million the top, it
// passed the top step, and a ratio to it was one of two lower bounds).
var deliveryLadder = []int{50_000, 75_000, 112_000, 170_000, 250_000, 380_000, 570_000, 850_000, 1_280_000, 1_900_000, 2_900_000, 4_300_000, 6_400_000, 9_600_000}

func ladderFor(members int) []int {
	var out []int
	for _, d := range deliveryLadder {
		r := max(d/(members-1), 1)
		if len(out) == 0 || r > out[len(out)-1] {
			out = append(out, min(r, 1_000_000))
		}
	}
	return out
}

func room(name string, members int) preset {
	return preset{name: name, members: members, senders: 4, rates: ladderFor(members), ladder: true,
		duration: 1500 * time.Millisecond, relays: allRelays}
}

// presets returns the scenarios of a --scenario value, in run order.
func presets(name string) ([]preset, error) {
	latency := preset{name: "latency", members: 20, senders: 4, rates: []int{200}, duration: 6 * time.Second, turns: 12,
		relays: append(allRelays[:len(allRelays):len(allRelays)], relayDurable)} // one step: durability's p99 is cheap to know
	v2 := room("v2room100", 100)
	v2.relays = []string{relayV2, refCoalesce, refNATS}
	switch name {
	case "room10":
		return []preset{room("room10", 10)}, nil
	case "room100":
		return []preset{room("room100", 100)}, nil
	case "room1000":
		return []preset{room("room1000", 1000)}, nil
	case "latency":
		return []preset{latency}, nil
	case "v2room100":
		return []preset{v2}, nil
	case stormScenario:
		return nil, nil // not a ladder: bench runs the storm (storm.go)
	case roomsScenario:
		return nil, nil // two shapes on one ladder: bench runs them (rooms.go)
	case nodesScenario:
		return nil, nil // four relay set-ups, steps alternating: bench runs them (nodes.go)
	case "all":
		v2.derive = "room100" // room100 runs the same relays on the same ladder
		return []preset{latency, room("room10", 10), room("room100", 100), v2, room("room1000", 1000)}, nil
	}
	return nil, fmt.Errorf("--scenario %q: want room10, room100, room1000, latency, v2room100, all, joinstorm, rooms1000 or nodes2", name)
}

// env is what the runs of one invocation share.
type env struct {
	c        config
	tmp      string
	self     string
	relayBin string
	logs     *os.File
	stderr   io.Writer
	start    time.Time
	starts   int
	buildErr error
	failures []string
	moreArgs []string // more flags for chatrelay (the storm's --max-members)
}

func bench(c config, stderr io.Writer) (*Report, error) {
	rep := &Report{Machine: runtimeInfo()}
	tmp, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logs, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	if c.relayLogs {
		logs = os.Stderr
	}
	e := &env{c: c, tmp: tmp, self: self, relayBin: c.relayBin, logs: logs, stderr: stderr, start: time.Now()}

	var ps []preset
	if c.scenario == "" {
		ps = []preset{{name: "custom", members: c.sc.Members, senders: c.sc.Senders, rates: c.rates,
			duration: c.sc.Duration, relays: c.relays}}
	} else if ps, err = presets(c.scenario); err != nil {
		return nil, err
	}
	for _, p := range ps {
		if c.relaysSet {
			p.relays = c.relays
		}
		if c.durationSet {
			p.duration = c.sc.Duration
		}
		sr := ScenarioReport{Name: p.name, Members: p.members, Senders: p.senders, DurationS: p.duration.Seconds(), Budget: c.sc.Budget, RefSenders: c.sc.RefSenders}
		if p.turns > 1 {
			sr.Turns = p.turns
		}
		began := time.Now()
		if p.derive != "" {
			sr.DerivedOf = p.derive
			for _, prev := range rep.Scenarios {
				if prev.Name != p.derive {
					continue
				}
				for _, r := range prev.Results {
					if contains(p.relays, r.Relay) {
						r.Scenario = p.name
						sr.Results = append(sr.Results, r)
					}
				}
			}
		} else {
			e.runPreset(p, &sr)
		}
		setRatios(sr.Results)
		sr.Summary = summarize(sr.Results, p.relays)
		sr.elapsed = time.Since(began)
		rep.Scenarios = append(rep.Scenarios, sr)
	}
	if c.scenario == stormScenario {
		rep.Storm = e.runStorm(c.storm)
	}
	if c.scenario == roomsScenario {
		rep.Rooms = e.runRooms(c.rooms, rep)
	}
	if c.scenario == nodesScenario {
		rep.Nodes = e.runNodes(c.nodes, rep)
	}
	rep.ElapsedS = time.Since(e.start).Seconds()
	rep.Failures = e.failures
	fmt.Fprintf(stderr, "relaybench: done in %.1f s\n", rep.ElapsedS)
	return rep, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runPreset runs p's relays, each a fresh process with p's room logged
// in once: on a room ladder or a step in turns (--alternate) all at once,
// taking turns at each rate; else one after another. Their steps are
// appended to sr.
func (e *env) runPreset(p preset, sr *ScenarioReport) {
	sc := e.c.sc
	sc.Members, sc.Senders, sc.Duration = p.members, p.senders, p.duration
	if (p.ladder || p.turns > 1) && e.c.alternate && len(p.relays) > 1 {
		err := raiseFDLimit(uint64(len(p.relays)*sc.Members) + 256)
		if err == nil {
			e.runTurns(p, p.relays, sc, sr)
			return
		}
		sr.Notes = append(sr.Notes, fmt.Sprintf("relays run one after another, not in turns: %v", err))
	}
	for _, name := range p.relays {
		if e.overTime() {
			sr.Notes = append(sr.Notes, fmt.Sprintf("%s: skipped, past --time-limit %v", name, e.c.timeLimit))
			continue
		}
		e.runTurns(p, []string{name}, sc, sr)
	}
}

func (e *env) overTime() bool {
	return e.c.timeLimit > 0 && time.Since(e.start) > e.c.timeLimit
}

// nextBisect is the rate between a best pass and a lowest failure that
// halves the gap geometrically (x1.5 per ladder step: about x1.22 after
// one bisection, x1.11 after two, x1.05 after three); false when there is
// nothing to bisect: no pass, no failure, or no integer between.
func nextBisect(pass, fail int) (int, bool) {
	if pass <= 0 || fail <= pass {
		return 0, false
	}
	mid := int(math.Sqrt(float64(pass) * float64(fail)))
	return mid, mid > pass && mid < fail
}

func toolWhy(r Result) string {
	var w []string
	if r.ToolLimited {
		w = append(w, fmt.Sprintf("LATE: senders took %.2f s", r.SendWindow))
	}
	if r.ToolSaturated {
		w = append(w, fmt.Sprintf("SATURATED: tool %.2f cores, busiest receiver %.2f", r.ToolCPUcores, r.RecvThreadMax))
	}
	return strings.Join(w, "; ")
}

// startRelay starts relay name on a fresh loopback port.
func (e *env) startRelay(name string, budget int) (*proc, netip.AddrPort, Proto, error) {
	e.starts++
	if name == refNATS {
		addr, err := freeTCPPort()
		if err != nil {
			return nil, addr, 0, err
		}
		p, err := startProc(e.self, []string{"--serve-ref", refNATS, "--listen", addr.String()}, addr, e.logs, waitNATS)
		return p, addr, ProtoNATS, err
	}
	addr, err := freeUDPPort()
	if err != nil {
		return nil, addr, 0, err
	}
	switch {
	case isChatrelay(name):
		if e.relayBin == "" {
			if e.buildErr != nil {
				return nil, addr, 0, e.buildErr
			}
			if e.relayBin, e.buildErr = buildRelay(e.tmp); e.buildErr != nil {
				return nil, addr, 0, e.buildErr
			}
		}
		args := []string{"--listen", addr.String(), "--metrics-listen", "",
			"--admin-socket", fmt.Sprintf("%s/admin-%d.sock", e.tmp, e.starts),
			"--flood", "off", "--log-level", "warn"}
		args = append(args, e.moreArgs...)
		dataDir, cleanup, err := e.durableArgs(name)
		if err != nil {
			return nil, addr, 0, err
		}
		args = append(args, dataDir...)
		proto := ProtoClassic
		if isV2(name) {
			// Receivers only listen: they never heartbeat, so the session
			// timeout must outlast the whole run.
			args = append(args, "--send-budget", strconv.Itoa(budget), "--send-budget-loopback", strconv.Itoa(budget), "--v2-timeout", "1h")
			proto = ProtoV2
		}
		// A probe's name of its own: relays sharing names (--nats) must
		// not see one name logged in twice (waitLoginAs).
		probe := fmt.Sprintf("probe%d", e.starts)
		p, err := startProc(e.relayBin, args, addr, e.logs, func(a netip.AddrPort, limit time.Duration, exited <-chan struct{}) error {
			return waitLoginAs(probe, a, limit, exited)
		})
		if err != nil {
			cleanup()
			return nil, addr, proto, err
		}
		p.onStop = cleanup
		return p, addr, proto, nil
	default:
		senders := e.c.sc.RefSenders
		if senders == 0 {
			senders = defaultRefSenders
		}
		p, err := startProc(e.self, []string{"--serve-ref", name, "--listen", addr.String(), "--budget", strconv.Itoa(budget),
			"--ref-senders", strconv.Itoa(senders)}, addr, e.logs, waitLogin)
		return p, addr, ProtoClassic, err
	}
}

// setRatios sets each row's deliveries/s relative to each reference's row
// of the same scenario, room and offered rate.
func setRatios(rs []Result) {
	type key struct {
		members, rate int
		relay         string
	}
	by := map[key]*Result{}
	for i := range rs {
		by[key{rs[i].Members, rs[i].OfferedRate, rs[i].Relay}] = &rs[i]
	}
	ratio := func(r *Result, ref string) float64 {
		o := by[key{r.Members, r.OfferedRate, ref}]
		if o == nil || o.DeliveriesPerS <= 0 {
			return 0
		}
		return r.DeliveriesPerS / o.DeliveriesPerS
	}
	for i := range rs {
		r := &rs[i]
		r.VsNaive, r.VsBatch, r.VsCoalesce, r.VsNATS = ratio(r, refNaive), ratio(r, refBatch), ratio(r, refCoalesce), ratio(r, refNATS)
	}
}

// Summary is one relay's result over a scenario's steps. Sustained is the
// step with the highest offered rate that was sustained (>= 99.9% delivered
// and kept up); peak is the highest deliveries/s of any step.
type Summary struct {
	Relay          string            `json:"relay"`
	V2Rev          uint64            `json:"v2_rev,omitempty"`
	Members        int               `json:"members"`
	Steps          int               `json:"steps"`
	PeakPerS       float64           `json:"peak_deliveries_per_s"`
	PeakRate       int               `json:"peak_at_offered_chats_per_s"`
	SustainedPerS  float64           `json:"sustained_deliveries_per_s"` // 0: no step was sustained
	SustainedRate  int               `json:"sustained_offered_chats_per_s"`
	AtLeast        bool              `json:"sustained_is_lower_bound"` // no step failed: the relay may sustain more
	P99FirstUs     float64           `json:"p99_us_first_step"`        // at the lowest offered rate
	P99SustainedUs float64           `json:"p99_us_at_sustained"`
	CPUusPerDeliv  float64           `json:"relay_cpu_us_per_delivery"` // at the sustained step (else the first)
	RxPerDeliv     float64           `json:"rx_per_delivery"`           // at the same step
	BytesPerDeliv  float64           `json:"rx_bytes_per_delivery"`     // at the same step
	Vs             map[string]Ratios `json:"vs,omitempty"`
}

// Ratios compare a relay's summary with a reference's.
type Ratios struct {
	Sustained float64 `json:"sustained,omitempty"`
	Peak      float64 `json:"peak,omitempty"`
	P99First  float64 `json:"p99_first_step,omitempty"`
}

func summarize(rs []Result, order []string) []Summary {
	var out []Summary
	for _, name := range order {
		s := Summary{Relay: name, AtLeast: true}
		var first, sust *Result
		for i := range rs {
			r := &rs[i]
			if r.Relay != name {
				continue
			}
			s.Members, s.V2Rev = r.Members, r.V2Rev
			s.Steps++
			if first == nil || r.OfferedRate < first.OfferedRate {
				first = r
			}
			if r.DeliveriesPerS > s.PeakPerS {
				s.PeakPerS, s.PeakRate = r.DeliveriesPerS, r.OfferedRate
			}
			if r.Sustained && (sust == nil || r.OfferedRate > sust.OfferedRate) {
				sust = r
			}
		}
		if s.Steps == 0 {
			continue
		}
		at := first
		if sust != nil {
			at = sust
			s.SustainedPerS, s.SustainedRate, s.P99SustainedUs = sust.DeliveriesPerS, sust.OfferedRate, sust.P99us
			for i := range rs {
				if rs[i].Relay == name && rs[i].OfferedRate > sust.OfferedRate {
					s.AtLeast = false
				}
			}
		} else {
			s.AtLeast = false
		}
		s.P99FirstUs = first.P99us
		s.CPUusPerDeliv, s.RxPerDeliv, s.BytesPerDeliv = at.CPUusPerDeliv, at.RxPerDeliv, at.BytesPerDeliv
		if at.RelayCPUs < 0 {
			s.CPUusPerDeliv = -1
		}
		out = append(out, s)
	}
	for i := range out {
		for _, ref := range references {
			for j := range out {
				o := &out[j]
				if o.Relay != ref || i == j {
					continue
				}
				var r Ratios
				if o.SustainedPerS > 0 {
					r.Sustained = out[i].SustainedPerS / o.SustainedPerS
				}
				if o.PeakPerS > 0 {
					r.Peak = out[i].PeakPerS / o.PeakPerS
				}
				if o.P99FirstUs > 0 {
					r.P99First = out[i].P99FirstUs / o.P99FirstUs
				}
				if out[i].Vs == nil {
					out[i].Vs = map[string]Ratios{}
				}
				out[i].Vs[ref] = r
			}
		}
	}
	return out
}

func ratioStr(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func printSteps(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "relay\toffered/s\tsent\tdeliveries/s\tratio\tdups\treord\tp50 µs\tp99 µs\tp99.9 µs\tmax µs\tCPU µs/deliv\trx/deliv\tB/deliv\tvs naive\tvs batch\tvs coalesce\tvs nats\ttool\t")
	for _, r := range rs {
		cpu := "?"
		if r.RelayCPUs >= 0 {
			cpu = fmt.Sprintf("%.2f", r.CPUusPerDeliv)
		}
		tool := fmt.Sprintf("%.2f/%.2f", r.ToolCPUcores, r.RecvThreadMax)
		if r.ToolSaturated {
			tool += " SATURATED"
		}
		if r.ToolLimited {
			tool += " LATE"
		}
		if r.SockDrops > 0 {
			tool += fmt.Sprintf(" SOCKDROPS %d", r.SockDrops)
		}
		ratio := fmt.Sprintf("%.4f", r.Ratio)
		if !r.Sustained {
			ratio += "*"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%.3f\t%.1f\t%s\t%s\t%s\t%s\t%s\t\n",
			relayRev(r.Relay, r.V2Rev), r.OfferedRate, r.Sent, r.DeliveriesPerS, ratio, r.Duplicates, r.Reordered,
			r.P50us, r.P99us, r.P999us, r.MaxUs, cpu, r.RxPerDeliv, r.BytesPerDeliv,
			ratioStr(r.VsNaive), ratioStr(r.VsBatch), ratioStr(r.VsCoalesce), ratioStr(r.VsNATS), tool)
	}
	tw.Flush()
	fmt.Fprintln(w, "ratio* = not sustained (below 99.9% delivered, or the last delivery came late); rx/deliv = datagrams (UDP) or reads (TCP) per delivery;")
	fmt.Fprintln(w, "B/deliv = bytes received (payload) per delivery; chatrelay-v2 rN = v2 members of revision N (2: compact datagrams);")
	fmt.Fprintln(w, "tool = load tool CPU in cores (whole process / busiest receiver thread), LATE = its senders could not keep the schedule,\n  SOCKDROPS n = datagrams the kernel dropped in its own member sockets (receive buffers full; missing from the ratio)")
}

func printSummary(w io.Writer, ss []Summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "relay\tpeak deliv/s\tsustained deliv/s\t@chats/s\tp99 first µs\tp99 @sust µs\tCPU µs/deliv\trx/deliv\tB/deliv\tvs naive\tvs batch\tvs coalesce\tvs nats\tp99 vs naive\t")
	for _, s := range ss {
		sust := "none"
		if s.SustainedPerS > 0 {
			sust = fmt.Sprintf("%.0f", s.SustainedPerS)
			if s.AtLeast {
				sust = ">=" + sust
			}
		}
		cpu := "?"
		if s.CPUusPerDeliv >= 0 {
			cpu = fmt.Sprintf("%.2f", s.CPUusPerDeliv)
		}
		vs := func(ref string) string {
			r, ok := s.Vs[ref]
			if !ok {
				return "-"
			}
			return ratioStr(r.Sustained) + "/" + ratioStr(r.Peak)
		}
		p99n := "-"
		if r, ok := s.Vs[refNaive]; ok {
			p99n = ratioStr(r.P99First)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%d\t%.0f\t%.0f\t%s\t%.3f\t%.1f\t%s\t%s\t%s\t%s\t%s\t\n",
			relayRev(s.Relay, s.V2Rev), s.PeakPerS, sust, s.SustainedRate, s.P99FirstUs, s.P99SustainedUs, cpu, s.RxPerDeliv, s.BytesPerDeliv,
			vs(refNaive), vs(refBatch), vs(refCoalesce), vs(refNATS), p99n)
	}
	tw.Flush()
	fmt.Fprintln(w, "vs REF = sustained/peak deliveries/s relative to REF; >= : no step failed, so the relay may sustain more;")
	fmt.Fprintln(w, "p99 first = at the lowest offered rate; CPU and rx/deliv at the sustained step (else the first)")
}
