package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// climber is one set-up on a ladder (a relay, or nodes2's relays sharing
// a room): how a step runs on it, and where its climb stands.
type climber struct {
	name string
	run  func(rate int) (Result, error) // one step at rate chats/s, and whether the set-up lived through it
	gone func() error                   // which of its processes has ended, if one has

	rows      []Result
	lastPass  int // best sustained offered chats/s
	firstFail int // lowest offered chats/s not sustained
	fails     int
	done      bool // stopped climbing
	broken    bool // a step failed: it takes no more
}

// failed reports that relay failed in scenario: on stderr, in notes and
// in the run's failures. One relay failing (a crash, a refused login) must
// not throw away the others' numbers of a ten-minute run.
func (e *env) failed(notes *[]string, scenario, relay string, err error) {
	msg := fmt.Sprintf("%s: %s: FAILED: %v", scenario, relay, err)
	fmt.Fprintln(e.stderr, "relaybench:", msg)
	*notes = append(*notes, msg)
	e.failures = append(e.failures, msg)
}

// climbInTurns runs rates on cs, steps of dur, the set-ups taking turns at
// each rate with the order reversed at every rate, so that none always
// goes first and all meet the machine's drift at the same minutes. On a
// ladder a step not sustained, unless the load tool was the limit, is run
// again up to --retries times, after every set-up's turn at that rate,
// and the rate is sustained if one of its runs is (each run is a row: a
// second of this shared machine's noise no longer decides a set-up's
// limit alone). A set-up stops climbing after --stop-after rates not
// sustained, or at a step the load tool could not offer or measure; then,
// in turns again, up to bisects steps each between its best pass and its
// first failure (nextBisect), retried alike. A set-up whose step fails
// (an error) takes no more steps; the others go on.
func (e *env) climbInTurns(scenario string, dur time.Duration, cs []*climber, rates []int, ladder bool, bisects int, notes *[]string) {
	// run runs one step of c at rate and keeps its row; false: none.
	run := func(c *climber, rate int) (Result, bool) {
		if e.overTime() {
			*notes = append(*notes, fmt.Sprintf("%s: stopped at %d chats/s: past --time-limit %v", c.name, rate, e.c.timeLimit))
			c.done = true
			return Result{}, false
		}
		fmt.Fprintf(e.stderr, "relaybench: %s: %s, %d chats/s for %v ...\n", scenario, c.name, rate, dur)
		r, err := c.run(rate)
		if err != nil {
			e.failed(notes, scenario, c.name, fmt.Errorf("at %d chats/s: %w", rate, err))
			c.done, c.broken = true, true
			return Result{}, false
		}
		r.Scenario, r.Relay = scenario, c.name
		c.rows = append(c.rows, r)
		return r, true
	}
	// again says whether a step whose last of runs runs was r runs again.
	again := func(r Result, runs int) bool {
		return ladder && !r.Sustained && !r.ToolLimited && !r.ToolSaturated && runs <= e.c.retries
	}
	// judge counts c's step at rate, whose last run was r.
	judge := func(c *climber, rate int, r Result, runs int) {
		if runs > 1 {
			verdict := "not sustained"
			if r.Sustained {
				verdict = "sustained"
			}
			*notes = append(*notes, fmt.Sprintf("%s: %d chats/s run %d times: %s", c.name, rate, runs, verdict))
		}
		if r.Sustained {
			c.lastPass = max(c.lastPass, rate)
		} else if c.fails++; c.firstFail == 0 || rate < c.firstFail {
			c.firstFail = rate
		}
		switch {
		case !ladder:
		case r.ToolLimited || r.ToolSaturated:
			*notes = append(*notes, fmt.Sprintf("%s: stopped climbing at %d chats/s: the load tool was the limit (%s)", c.name, rate, toolWhy(r)))
			c.done = true
		case e.c.stopAfter > 0 && c.fails >= e.c.stopAfter:
			c.done = true
		}
	}
	reversed := slices.Clone(cs)
	slices.Reverse(reversed)
	inTurn := func(round int) []*climber {
		if round%2 == 0 {
			return cs
		}
		return reversed
	}
	// round gives each of cs its rate (rateOf; false: none this round),
	// in turn, then runs again, in turn, the steps that were not
	// sustained, up to --retries times, before judging them.
	round := func(order []*climber, rateOf func(*climber) (int, bool)) {
		type pending struct {
			c    *climber
			rate int
			runs int
		}
		var todo []pending
		for _, c := range order {
			if rate, ok := rateOf(c); ok {
				todo = append(todo, pending{c, rate, 0})
			}
		}
		for len(todo) > 0 {
			var next []pending
			for _, p := range todo {
				r, ok := run(p.c, p.rate)
				switch p.runs++; {
				case !ok:
				case again(r, p.runs):
					next = append(next, p)
				default:
					judge(p.c, p.rate, r, p.runs)
				}
			}
			todo = next
		}
	}
	for i, rate := range rates {
		round(inTurn(i), func(c *climber) (int, bool) { return rate, !c.done })
	}
	for i := 0; ladder && i < bisects; i++ {
		round(inTurn(len(rates)+i), func(c *climber) (int, bool) {
			if c.broken || c.gone() != nil {
				return 0, false
			}
			return nextBisect(c.lastPass, c.firstFail)
		})
	}
}

// runTurns starts the relays names, logs p's room in on each, climbs p's
// rates on them in turns (climbInTurns, --bisect steps) and stops them;
// their rows are appended to sr grouped by relay, in names' order. A relay
// that cannot start is reported and the others still climb. With p.turns
// > 1 each rate is p.turns steps of sc.Duration/p.turns in turns, pooled
// into one row per relay and rate (poolTurns).
func (e *env) runTurns(p preset, names []string, sc Scenario, sr *ScenarioReport) {
	rates := p.rates
	if p.turns > 1 {
		sc.Duration /= time.Duration(p.turns)
		rates = nil
		for _, r := range p.rates {
			for range p.turns {
				rates = append(rates, r)
			}
		}
	}
	var cs []*climber
	var stops []func()
	defer func() {
		for _, stop := range slices.Backward(stops) { // the members close before their relay stops
			stop()
		}
	}()
	for _, name := range names {
		pr, addr, proto, err := e.startRelay(name, sc.Budget)
		if err != nil {
			e.failed(&sr.Notes, p.name, name, err)
			continue
		}
		stops = append(stops, pr.stop)
		t0 := time.Now()
		sess, err := dial(proto, addr, sc)
		if err != nil {
			e.failed(&sr.Notes, p.name, name, err)
			continue
		}
		stops = append(stops, sess.close)
		fmt.Fprintf(e.stderr, "relaybench: %s: %s: %d %s members logged in in %.1f s\n", p.name, relayRev(name, sess.rev), sc.Members, proto, time.Since(t0).Seconds())
		cs = append(cs, &climber{name: name, gone: pr.gone, run: func(rate int) (Result, error) {
			r, err := sess.step(rate, pr.cpu)
			if err == nil {
				err = pr.gone()
			}
			return r, err
		}})
	}
	e.climbInTurns(p.name, sc.Duration, cs, rates, p.ladder, e.c.bisect, &sr.Notes)
	for _, c := range cs {
		if p.turns <= 1 {
			sr.Results = append(sr.Results, c.rows...)
			continue
		}
		for _, rate := range p.rates {
			var turns []Result
			for _, r := range c.rows {
				if r.OfferedRate == rate {
					turns = append(turns, r)
				}
			}
			if len(turns) == 0 {
				continue
			}
			pooled := poolTurns(turns)
			sr.Results = append(sr.Results, pooled)
			sr.Notes = append(sr.Notes, fmt.Sprintf("%s at %d chats/s: p99 of its %d turns %s µs (pooled %.0f)", c.name, rate, len(turns), turnP99s(turns), pooled.P99us))
		}
	}
}

// turnP99s lists the turns' p99s in µs, comma-separated.
func turnP99s(turns []Result) string {
	s := make([]string, len(turns))
	for i, r := range turns {
		s[i] = fmt.Sprintf("%.0f", r.P99us)
	}
	return strings.Join(s, ", ")
}
