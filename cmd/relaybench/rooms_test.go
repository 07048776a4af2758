//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestRoomsScenario runs rooms1000 as a user would (the command, flags in,
// JSON out) in a tiny version, 20 rooms of 5 against room100, on the relay
// built from this tree: every member forms (joins its room, leaves main),
// every chat reaches the other members of its room and nobody else, and
// the report has both shapes, the comparison and a verdict.
func TestRoomsScenario(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--relay-bin", relayBin(t), "--scenario", "rooms1000", "--rooms-count", "20", "--rooms-size", "5",
		"--rooms-deliveries", "4000,8000", "--duration", "300ms", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	r := rep.Rooms
	if r == nil || r.Rooms != 20 || r.RoomSize != 5 || len(rep.Failures) != 0 {
		t.Fatalf("rooms report %+v, failures %q", r, rep.Failures)
	}
	var names []string
	for _, s := range rep.Scenarios {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"room100", "rooms20"}) {
		t.Fatalf("scenarios %q: want room100 and rooms20", names)
	}
	if s := rep.Scenarios[1]; s.Members != 100 || s.Rooms != 20 || s.Senders != 20 {
		t.Errorf("rooms20: %d members in %d rooms, %d senders: want 100, 20, 20", s.Members, s.Rooms, s.Senders)
	}
	for _, f := range r.Forming {
		if f.Members != 100 || f.TookS <= 0 || f.Hellos < 200 {
			t.Errorf("forming %+v: want 100 members, two hellos each", f)
		}
		if wantJoins := int64(100); f.Shape == "rooms20" && f.Joins < wantJoins {
			t.Errorf("forming %s: %d join+part datagrams, want at least %d", f.Shape, f.Joins, wantJoins)
		}
	}
	for _, s := range rep.Scenarios {
		size := int64(s.Members / max(s.Rooms, 1))
		if len(s.Results) != 2 {
			t.Errorf("%s: %d steps, want 2", s.Name, len(s.Results))
		}
		for _, st := range s.Results {
			t.Logf("%s at %d chats/s: sent %d, delivered %d of %d, echoes %d, foreign %d, other %d, CPU %.2f µs/deliv",
				s.Name, st.OfferedRate, st.Sent, st.Delivered, st.Expected, st.Echoes, st.Foreign, st.Other, st.CPUusPerDeliv)
			// Each chat reaches the size-1 others of its room once, its
			// sender as its echo, and no member of another room.
			if st.Sent == 0 || st.Expected != st.Sent*(size-1) || st.Delivered != st.Expected || st.Foreign != 0 || st.Echoes != st.Sent {
				t.Errorf("%s: sent %d, delivered %d of %d, foreign %d, echoes %d", s.Name, st.Sent, st.Delivered, st.Expected, st.Foreign, st.Echoes)
			}
			if st.Duplicates != 0 || st.Reordered != 0 || st.Stale != 0 {
				t.Errorf("%s: duplicates %d, reordered %d, stale %d", s.Name, st.Duplicates, st.Reordered, st.Stale)
			}
		}
	}
	if len(r.Compare) != 2 || r.Compare[0].OfferedDeliveries != 4000 || r.Compare[1].OfferedDeliveries != 8000 || r.Foreign != 0 {
		t.Errorf("compare %+v, foreign %d", r.Compare, r.Foreign)
	}
	var human bytes.Buffer
	printReport(&human, &rep)
	for _, want := range []string{"== room100: 100 members,", "== rooms20: 100 members in 20 rooms of 5,", "PASS: chats reach only their own room: 0 reached another",
		"20 rooms of 5 cost no more per delivery than room100 (within 10%)"} {
		if !strings.Contains(human.String(), want) {
			t.Errorf("the report does not say %q:\n%s", want, human.String())
		}
	}
}

// TestReceiverRooms: a receiver counts a chat of the member's own room as
// a delivery and one of another room as foreign, never as a delivery.
func TestReceiverRooms(t *testing.T) {
	lay := layout{rooms: 3, size: 4, perRoom: 2} // senders 0..5 are members 0, 1, 4, 5, 8, 9
	if got := []int{lay.sender(0), lay.sender(1), lay.sender(2), lay.sender(5)}; !slices.Equal(got, []int{0, 1, 4, 9}) {
		t.Fatalf("senders' members %v", got)
	}
	if lay.roomName(2) != "r0002" || (layout{rooms: 1, size: 4, perRoom: 2}).roomName(0) != "main" {
		t.Errorf("room names %q", lay.roomName(2))
	}
	r := &receiver{ms: []*member{{idx: 5}, {idx: 6}}, lay: lay, seqs: 10, stepStart: 1} // both in room 1
	r.st.seen = make([][]uint64, 2*lay.perRoom)
	r.st.last = make([]int64, 2*lay.perRoom)
	for i := range r.st.seen {
		r.st.seen[i], r.st.last[i] = []uint64{0}, -1
	}
	r.now = 1000
	chat := func(li, s int, q int64) {
		b := bytes.Repeat([]byte("x"), textLen)
		encodeText(b, s, q, 500)
		r.chat(li, b)
	}
	chat(1, 2, 0) // member 4, room 1, to member 6: a delivery
	chat(1, 3, 0) // member 5, room 1, to member 6: a delivery
	chat(0, 3, 1) // member 5 to itself: its echo
	chat(0, 0, 0) // member 0, room 0: foreign
	chat(1, 4, 0) // member 8, room 2: foreign
	chat(1, 2, 0) // again: a duplicate
	if st := r.st; st.delivered != 2 || st.self != 1 || st.foreign != 2 || st.dups != 1 {
		t.Errorf("delivered %d, echoes %d, foreign %d, dups %d: want 2, 1, 2, 1", st.delivered, st.self, st.foreign, st.dups)
	}
}

func TestParseRoomsFlags(t *testing.T) {
	c, err := parse([]string{"--scenario", "rooms1000"}, &bytes.Buffer{})
	if err != nil || c.rooms.Count != 1000 || c.rooms.Size != 10 || c.rooms.LoginRate != 2000 || !slices.Equal(c.rooms.Deliveries, deliveryLadder) {
		t.Errorf("defaults: %+v, %v", c.rooms, err)
	}
	c, err = parse([]string{"--rooms-count", "20", "--rooms-deliveries", "100, 200", "--duration", "1s"}, &bytes.Buffer{})
	if err != nil || c.scenario != "rooms1000" || c.rooms.Count != 20 || !slices.Equal(c.rooms.Deliveries, []int{100, 200}) {
		t.Errorf("--rooms-count alone: scenario %q, %+v, %v", c.scenario, c.rooms, err)
	}
	if args := relayArgsFor(layout{rooms: 1000, size: 10, perRoom: 1}); len(args) != 0 {
		t.Errorf("1,000 rooms of 10 need no relay flags, got %q", args)
	}
	if args := relayArgsFor(layout{rooms: 9999, size: 2, perRoom: 1}); !slices.Equal(args, []string{"--max-members", "19998"}) {
		t.Errorf("9,999 rooms of 2: %q", args)
	}
	bad := [][]string{
		{"--scenario", "room100", "--rooms-count", "10"},
		{"--scenario", "joinstorm", "--rooms-size", "5"},
		{"--scenario", "rooms1000", "--members", "100"},
		{"--scenario", "rooms1000", "--rates", "100"},
		{"--scenario", "rooms1000", "--plot", "x"},
		{"--rooms-count", "1"},
		{"--rooms-count", "10000"},
		{"--rooms-size", "1"},
		{"--rooms-count", "5000", "--rooms-size", "5"},
		{"--rooms-login-rate", "0"},
		{"--rooms-deliveries", "1,x"},
	}
	for _, args := range bad {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q): no error", args)
		}
	}
}
