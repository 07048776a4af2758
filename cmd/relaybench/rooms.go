//go:build linux

package main

// The rooms scenario: does fan-out cost the same per delivery when the
// deliveries are spread over many small rooms as in one room of 100? In one
// run, two relays (fresh chatrelay processes with v2 members of revision 2)
// hold the two shapes: room100, one room main of 100 members with 4
// senders, and N rooms of M members (1,000 of 10 by default), each member
// having joined its room and left main, with one sender per room. Both
// climb one ladder of offered deliveries/s, a step of one shape then the
// same offered rate on the other, so that both see the same machine; the
// verdict compares their relay CPU per delivery at the highest offered
// rate both sustained.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
	"golang.org/x/sys/unix"
)

const (
	roomsScenario = "rooms1000"
	// roomsCPULimit is the target: the rooms shape costs at most
	// 10% more relay CPU per delivery than room100.
	roomsCPULimit = 1.10
	// roomsStep is the sending time of a step unless --duration says.
	roomsStep = 2 * time.Second
	// formRetry is how long a member waits for an answer before it sends
	// its hello (or its join and part) again; formTries bounds the sends.
	formRetry = time.Second
	formTries = 6
	// relayDefaultMaxRooms is cmd/relay's --max-rooms default (main and
	// the configured rooms included).
	relayDefaultMaxRooms = 10000
)

// roomsConfig is what --rooms-* set.
type roomsConfig struct {
	Count      int   // rooms of the rooms shape
	Size       int   // members in each
	LoginRate  int   // members starting their login per second
	Deliveries []int // offered deliveries/s, climbed by both shapes
}

func defineRoomsFlags(fs *flag.FlagSet, r *roomsConfig) {
	fs.IntVar(&r.Count, "rooms-count", 1000, "rooms1000: rooms of the rooms shape (room names r0000 …)")
	fs.IntVar(&r.Size, "rooms-size", 10, "rooms1000: members in each of those rooms (one of them sends)")
	fs.IntVar(&r.LoginRate, "rooms-login-rate", 2000, "rooms1000: members starting their login (hello, cookie, hello, join, part main) per second")
	fs.Func("rooms-deliveries", "rooms1000: comma-separated offered `deliveries/s` that both shapes climb (default the room ladder, 50000 … 4300000)", func(v string) error {
		r.Deliveries = nil
		for _, f := range strings.Split(v, ",") {
			d, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || d < 1 || d > 100_000_000 {
				return fmt.Errorf("bad rate %q", f)
			}
			r.Deliveries = append(r.Deliveries, d)
		}
		return nil
	})
}

// roomsRefused are the flags that mean nothing to rooms1000: it picks its
// relay, members, senders and rates itself.
var roomsRefused = []string{"relays", "proto", "members", "senders", "rate", "rates", "plot"}

// checkRoomsFlags runs after the flags are parsed, as checkStormFlags does.
func checkRoomsFlags(fs *flag.FlagSet, c *config) error {
	if ok, err := scenarioFlags(fs, c, "rooms-", roomsScenario, roomsRefused, "it runs chatrelay-v2 in room100 and in rooms; see --rooms-*"); !ok || err != nil {
		return err
	}
	r := &c.rooms
	if r.Deliveries == nil {
		r.Deliveries = deliveryLadder
	}
	switch {
	case r.Count < 2 || r.Count > relayDefaultMaxRooms-1: // and main
		return fmt.Errorf("--rooms-count: 2 to %d", relayDefaultMaxRooms-1)
	case r.Size < 2 || r.Size > 100:
		return errors.New("--rooms-size: 2 to 100")
	case r.Count*r.Size > 20000:
		return errors.New("--rooms-count × --rooms-size: at most 20000 members")
	case r.LoginRate < 1 || r.LoginRate > 100000:
		return errors.New("--rooms-login-rate: 1 to 100000")
	}
	return nil
}

// RoomsReport is what a rooms1000 run measured (Report.Rooms); the steps
// of each shape are in Report.Scenarios.
type RoomsReport struct {
	Rooms     int          `json:"rooms"`
	RoomSize  int          `json:"room_size"`
	LoginRate int          `json:"logins_per_s"`
	Forming   []FormReport `json:"forming"`
	Compare   []RoomsStep  `json:"compare"` // the offered rates both shapes ran

	// The verdict, at the highest offered deliveries/s both sustained.
	AtDeliveries int      `json:"verdict_at_offered_deliveries_per_s"` // 0: none
	Room100CPU   float64  `json:"room100_cpu_us_per_delivery"`
	RoomsCPU     float64  `json:"rooms_cpu_us_per_delivery"`
	Ratio        float64  `json:"cpu_ratio"` // RoomsCPU / Room100CPU
	Pass         bool     `json:"pass"`
	Foreign      int64    `json:"foreign"` // chats received in another room than their own: must be 0
	Notes        []string `json:"notes,omitempty"`
}

// FormReport is how one shape's members logged in and reached their rooms.
type FormReport struct {
	Shape   string  `json:"shape"`
	Members int     `json:"members"`
	Rooms   int     `json:"rooms"`
	TookS   float64 `json:"took_s"` // first hello to the last member in its room
	Hellos  int64   `json:"hellos_sent"`
	Joins   int64   `json:"joins_sent"` // datagrams of join and part main
	Resent  int64   `json:"resent"`     // sent again after formRetry without an answer
}

// RoomsStep compares the two shapes at one offered deliveries/s.
type RoomsStep struct {
	OfferedDeliveries int     `json:"offered_deliveries_per_s"`
	Room100PerS       float64 `json:"room100_deliveries_per_s"`
	RoomsPerS         float64 `json:"rooms_deliveries_per_s"`
	Room100CPU        float64 `json:"room100_cpu_us_per_delivery"`
	RoomsCPU          float64 `json:"rooms_cpu_us_per_delivery"`
	Ratio             float64 `json:"cpu_ratio"`
	Room100Sustained  bool    `json:"room100_sustained"`
	RoomsSustained    bool    `json:"rooms_sustained"`
}

// roomShape is one of the two shapes while the run climbs.
type roomShape struct {
	name  string
	lay   layout
	pr    *proc
	sess  *session
	sr    ScenarioReport
	fails int
	done  bool           // stopped climbing
	steps map[int]Result // by offered deliveries/s
}

// runRooms runs the rooms scenario, appending each shape's steps to
// rep.Scenarios.
func (e *env) runRooms(rc roomsConfig, rep *Report) *RoomsReport {
	out := &RoomsReport{Rooms: rc.Count, RoomSize: rc.Size, LoginRate: rc.LoginRate}
	dur := roomsStep
	if e.c.durationSet {
		dur = e.c.sc.Duration
	}
	shapes := []*roomShape{
		{name: "room100", lay: layout{rooms: 1, size: 100, perRoom: 4}, steps: map[int]Result{}},
		{name: fmt.Sprintf("rooms%d", rc.Count), lay: layout{rooms: rc.Count, size: rc.Size, perRoom: 1}, steps: map[int]Result{}},
	}
	fail := func(sh *roomShape, err error) {
		msg := fmt.Sprintf("%s: %s: %s: FAILED: %v", roomsScenario, sh.name, relayV2, err)
		fmt.Fprintln(e.stderr, "relaybench:", msg)
		e.failures = append(e.failures, msg)
		out.Notes = append(out.Notes, msg)
	}
	defer func() {
		for _, sh := range shapes {
			if sh.sess != nil {
				sh.sess.close()
			}
			if sh.pr != nil {
				sh.pr.stop()
			}
		}
	}()
	if err := raiseFDLimit(uint64(shapes[0].lay.members()+shapes[1].lay.members()) + 256); err != nil {
		fail(shapes[1], err)
		return out
	}
	for _, sh := range shapes {
		sc := e.c.sc
		sc.Members, sc.Senders, sc.Duration = sh.lay.members(), sh.lay.senders(), dur
		sh.sr = ScenarioReport{Name: sh.name, Members: sc.Members, Senders: sc.Senders, Rooms: sh.lay.rooms,
			DurationS: dur.Seconds(), Budget: sc.Budget}
		e.moreArgs = relayArgsFor(sh.lay)
		pr, addr, _, err := e.startRelay(relayV2, sc.Budget)
		e.moreArgs = nil
		if err != nil {
			fail(sh, err)
			return out
		}
		sh.pr = pr
		ms, fr, err := formRooms(addr, sh.lay, rc.LoginRate, sc.RcvBuf, pr.exited, e.stderr)
		fr.Shape = sh.name
		out.Forming = append(out.Forming, fr)
		if err != nil {
			for _, m := range ms {
				m.close()
			}
			fail(sh, err)
			return out
		}
		sh.sess = &session{proto: ProtoV2, sc: sc, lay: sh.lay, members: ms, addrs: []netip.AddrPort{addr}}
		fmt.Fprintf(e.stderr, "relaybench: %s: %s: %d v2 members in %d rooms of %d in %.1f s\n",
			roomsScenario, sh.name, fr.Members, sh.lay.rooms, sh.lay.size, fr.TookS)
	}
	for _, d := range rc.Deliveries {
		for _, sh := range shapes {
			if sh.done {
				continue
			}
			if e.overTime() {
				sh.sr.Notes = append(sh.sr.Notes, fmt.Sprintf("stopped at %d offered deliveries/s: past --time-limit %v", d, e.c.timeLimit))
				sh.done = true
				continue
			}
			if err := e.roomsStep(sh, d); err != nil {
				fail(sh, err)
				sh.done = true
			}
		}
	}
	for _, sh := range shapes {
		sh.sr.Summary = summarize(sh.sr.Results, []string{relayV2})
		rep.Scenarios = append(rep.Scenarios, sh.sr)
	}
	compareRooms(out, shapes[0].steps, shapes[1].steps)
	return out
}

// relayArgsFor returns the flags chatrelay needs beyond its defaults for
// the members of lay (its rooms and main always fit --max-rooms: see
// checkRoomsFlags).
func relayArgsFor(lay layout) []string {
	if lay.members() > relayDefaultMaxMembers {
		return []string{"--max-members", strconv.Itoa(lay.members())}
	}
	return nil
}

// roomsStep runs one step of a shape at d offered deliveries/s (chats/s =
// d / (room size − 1)) and decides whether the shape climbs on.
func (e *env) roomsStep(sh *roomShape, d int) error {
	rate := max(d/(sh.lay.size-1), 1)
	fmt.Fprintf(e.stderr, "relaybench: %s: %s, %d chats/s (%d deliveries/s offered) for %v ...\n", roomsScenario, sh.name, rate, d, sh.sess.sc.Duration)
	r, err := sh.sess.step(rate, sh.pr.cpu)
	if err == nil && sh.pr.exited() {
		err = fmt.Errorf("the relay exited (%v)", sh.pr.err)
	}
	if err != nil {
		return fmt.Errorf("at %d chats/s: %w", rate, err)
	}
	r.Scenario, r.Relay = sh.name, relayV2
	sh.sr.Results = append(sh.sr.Results, r)
	sh.steps[d] = r
	if r.Foreign > 0 {
		sh.sr.Notes = append(sh.sr.Notes, fmt.Sprintf("at %d chats/s, %d chats reached members of another room", rate, r.Foreign))
	}
	if !r.Sustained {
		sh.fails++
	}
	switch {
	case r.ToolLimited || r.ToolSaturated:
		sh.sr.Notes = append(sh.sr.Notes, fmt.Sprintf("%s: stopped climbing at %d chats/s: the load tool was the limit (%s)", relayV2, rate, toolWhy(r)))
		sh.done = true
	case e.c.stopAfter > 0 && sh.fails >= e.c.stopAfter:
		sh.done = true
	}
	return nil
}

// compareRooms fills the comparison and the verdict from the two shapes'
// steps by offered deliveries/s (small is room100, rooms the other).
func compareRooms(out *RoomsReport, small, rooms map[int]Result) {
	for _, r := range small {
		out.Foreign += r.Foreign
	}
	for d, rr := range rooms {
		out.Foreign += rr.Foreign
		rs, ok := small[d]
		if !ok {
			continue
		}
		c := RoomsStep{OfferedDeliveries: d, Room100PerS: rs.DeliveriesPerS, RoomsPerS: rr.DeliveriesPerS,
			Room100CPU: rs.CPUusPerDeliv, RoomsCPU: rr.CPUusPerDeliv, Room100Sustained: rs.Sustained, RoomsSustained: rr.Sustained}
		if rs.CPUusPerDeliv > 0 && rr.RelayCPUs >= 0 {
			c.Ratio = rr.CPUusPerDeliv / rs.CPUusPerDeliv
		}
		out.Compare = append(out.Compare, c)
	}
	slices.SortFunc(out.Compare, func(a, b RoomsStep) int { return a.OfferedDeliveries - b.OfferedDeliveries })
	for _, c := range out.Compare {
		if c.Room100Sustained && c.RoomsSustained && c.Ratio > 0 {
			out.AtDeliveries, out.Room100CPU, out.RoomsCPU, out.Ratio = c.OfferedDeliveries, c.Room100CPU, c.RoomsCPU, c.Ratio
		}
	}
	out.Pass = out.AtDeliveries > 0 && out.Ratio <= roomsCPULimit && out.Foreign == 0
}

// printRooms prints the comparison and the verdict.
func printRooms(w io.Writer, r *RoomsReport) {
	fmt.Fprintf(w, "\n== %s: CPU per delivery in %d rooms of %d against room100, v2 members of revision %d (a relay for each, steps alternating)\n",
		roomsScenario, r.Rooms, r.RoomSize, wire.Rev)
	for _, f := range r.Forming {
		fmt.Fprintf(w, "forming %s: %d members in %d rooms in %.2f s at %d logins/s (%d hellos, %d join+part datagrams, %d sent again)\n",
			f.Shape, f.Members, f.Rooms, f.TookS, r.LoginRate, f.Hellos, f.Joins, f.Resent)
	}
	if len(r.Compare) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "offered deliv/s\troom100 deliv/s\trooms deliv/s\troom100 CPU µs/deliv\trooms CPU µs/deliv\trooms/room100\t")
		for _, c := range r.Compare {
			fmt.Fprintf(tw, "%d\t%.0f%s\t%.0f%s\t%.2f\t%.2f\t%.2f\t\n", c.OfferedDeliveries, c.Room100PerS, star(c.Room100Sustained),
				c.RoomsPerS, star(c.RoomsSustained), c.Room100CPU, c.RoomsCPU, c.Ratio)
		}
		tw.Flush()
		fmt.Fprintln(w, "* = not sustained")
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	fmt.Fprintf(w, "%s: chats reach only their own room: %d reached another\n", passFail(r.Foreign == 0), r.Foreign)
	line := fmt.Sprintf("%d rooms of %d cost no more per delivery than room100 (within %.0f%%): ", r.Rooms, r.RoomSize, (roomsCPULimit-1)*100)
	if r.AtDeliveries == 0 {
		line += "no offered rate was sustained by both shapes"
	} else {
		line += fmt.Sprintf("%.2f vs %.2f µs, ratio %.3f at %d offered deliveries/s", r.RoomsCPU, r.Room100CPU, r.Ratio, r.AtDeliveries)
	}
	fmt.Fprintf(w, "%s: %s\n", passFail(r.Pass), line)
}

func star(sustained bool) string {
	if sustained {
		return ""
	}
	return "*"
}

// formRooms opens lay.members() UDP members (receive buffers of rcvbuf
// bytes) to the relay at addr and logs them in as v2 sessions of the newest
// revision (wire.Rev), starting rate a second: hello, the relay's retry with a cookie, hello
// again, welcome; then, when there is more than one room, a datagram with
// join (its room) and part (main), answered by the room's welcome and
// parted. A member that hears nothing
// for formRetry sends its last datagram again, formTries times at most.
// exited (may be nil) says the relay is gone. The members are returned
// with the report, and with an error when some could not be formed (the
// caller closes them).
func formRooms(addr netip.AddrPort, lay layout, rate, rcvbuf int, exited func() bool, progress io.Writer) ([]*member, FormReport, error) {
	n := lay.members()
	fr := FormReport{Members: n, Rooms: lay.rooms}
	f := &former{lay: lay, st: make([]formState, n)}
	for i := 0; i < n; i++ {
		m, err := openUDPMember(fmt.Sprintf("m%05d", i), i, rcvbuf, addr)
		if err != nil {
			return f.ms, fr, fmt.Errorf("member %d: %w", i, err)
		}
		f.ms = append(f.ms, m)
	}
	err := f.run(rate, exited, progress)
	fr.TookS, fr.Hellos, fr.Joins, fr.Resent = f.took.Seconds(), f.hellos, f.joins, f.resent
	if err != nil {
		return f.ms, fr, err
	}
	settle(f.ms, make([]byte, 65536))
	return f.ms, fr, nil
}

// formState is one member's progress through formRooms.
type formState struct {
	phase    uint8 // formNew, formHello, formRoom, formDone
	sends    uint8 // datagrams of this phase sent, retries included
	gen      uint32
	cookie   string
	welcomed bool // formRoom: the room's welcome came
	parted   bool // formRoom: main's parted came
}

const (
	formNew = iota
	formHello
	formRoom
	formDone
)

// former is the state of one formRooms run; one goroutine owns it.
type former struct {
	lay    layout
	ms     []*member
	st     []formState
	due    []formDue // retries, in the order they fall due
	done   int
	took   time.Duration
	hellos int64
	joins  int64
	resent int64
	err    error
}

type formDue struct {
	i   int
	gen uint32
	at  time.Time
}

// run starts member i's login at i/rate s and reads every member's socket
// through one epoll until each is formed, a member fails, the relay exits,
// or the deadline (the schedule plus 30 s) passes. f.took is the time it
// ran, whatever the outcome.
func (f *former) run(rate int, exited func() bool, progress io.Writer) error {
	n := len(f.ms)
	start := time.Now()
	defer func() { f.took = time.Since(start) }()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	for i, m := range f.ms {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, m.fd, &ev); err != nil {
			return err
		}
	}
	start = time.Now() // the first hello
	interval := time.Second / time.Duration(rate)
	deadline := start.Add(time.Duration(n)*interval + 30*time.Second)
	nextReport := start.Add(time.Second)
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 65536)
	var frames []wire.Frame
	next := 0
	for f.done < n && f.err == nil {
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("%d of %d members formed within %v", f.done, n, deadline.Sub(start).Round(time.Second))
		}
		if exited != nil && exited() {
			return errors.New("the relay exited while the members logged in")
		}
		if progress != nil && now.After(nextReport) {
			fmt.Fprintf(progress, "relaybench: %s: %.0f s: %d of %d members in their rooms\n", roomsScenario, now.Sub(start).Seconds(), f.done, n)
			nextReport = nextReport.Add(time.Second)
		}
		for next < n && !start.Add(time.Duration(next)*interval).After(now) {
			f.st[next].phase = formHello
			f.send(next, now)
			next++
		}
		for len(f.due) > 0 && !f.due[0].at.After(now) {
			d := f.due[0]
			f.due = f.due[1:]
			if st := &f.st[d.i]; st.gen == d.gen && st.phase != formDone {
				if st.sends >= formTries {
					return fmt.Errorf("%s: no answer after %d tries (phase %d)", f.ms[d.i].name, st.sends, st.phase)
				}
				f.resent++
				f.send(d.i, now)
			}
		}
		k, err := unix.EpollWait(ep, events, 1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		for e := 0; e < k && f.err == nil; e++ {
			i := int(events[e].Fd)
			for r := 0; r < 64; r++ {
				c, err := unix.Read(f.ms[i].fd, buf)
				if err != nil {
					break
				}
				if frames, err = wire.DecodeV2Wide(frames[:0], buf[:c]); err == nil {
					f.handle(i, frames, time.Now())
				}
			}
		}
	}
	return f.err
}

// send sends member i's datagram of its phase and queues its retry.
func (f *former) send(i int, now time.Time) {
	st, m := &f.st[i], f.ms[i]
	var b []byte
	switch st.phase {
	case formHello:
		b = helloV2(m.name, st.cookie, wire.Rev)
		f.hellos++
	case formRoom:
		b = wire.EncodeV2(&wire.Frame{T: wire.FrameJoin, Room: f.lay.roomName(f.lay.roomOf(i))},
			&wire.Frame{T: wire.FramePart, Room: wire.RoomMain})
		f.joins++
	default:
		return
	}
	st.sends++
	st.gen++
	if _, err := unix.Write(m.fd, b); err != nil {
		f.err = fmt.Errorf("%s: %w", m.name, err)
		return
	}
	f.due = append(f.due, formDue{i: i, gen: st.gen, at: now.Add(formRetry)})
}

// handle takes the frames member i received: a retry's cookie, the
// welcomes, parted, and refusals (which end the run).
func (f *former) handle(i int, frames []wire.Frame, now time.Time) {
	st := &f.st[i]
	room := f.lay.roomName(f.lay.roomOf(i))
	for _, fr := range frames {
		switch {
		case fr.T == wire.FrameRefused || (fr.T == wire.FrameError && st.phase == formRoom):
			f.err = fmt.Errorf("%s: %s %s: %s", f.ms[i].name, fr.T, fr.Code, fr.Reason)
			return
		case st.phase == formHello && fr.T == wire.FrameRetry:
			st.cookie, st.sends = fr.Cookie, 0
			f.send(i, now)
		case st.phase == formHello && fr.T == wire.FrameWelcome && fr.Room == wire.RoomMain:
			if fr.Rev < 1 {
				f.err = fmt.Errorf("%s: welcome of revision %d: the relay does not speak rooms", f.ms[i].name, fr.Rev)
				return
			}
			if f.lay.rooms == 1 {
				f.finish(i)
				continue
			}
			st.phase, st.sends = formRoom, 0
			f.send(i, now)
		case st.phase == formRoom && fr.T == wire.FrameWelcome && fr.Room == room:
			st.welcomed = true
		case st.phase == formRoom && fr.T == wire.FrameParted && fr.Room == wire.RoomMain:
			st.parted = true
		}
		if st.phase == formRoom && st.welcomed && st.parted {
			f.finish(i)
		}
	}
}

func (f *former) finish(i int) {
	f.st[i].phase = formDone
	f.st[i].gen++
	f.done++
}
