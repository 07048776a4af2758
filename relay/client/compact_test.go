package client_test

import (
	"slices"
	"testing"

	"github.com/chatrelay/chatrelay/relay/client"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// A relay of revision 2 packs events compactly, context lines stating their
// room, epoch and first seq: the client reads them whole. Events lost on
// their first way are repaired from compact datagrams (a repair answers
// several events at once, in two rooms), and each reaches Events once, in
// order, in its own room.
func TestCompactDatagramsAreReadWhole(t *testing.T) {
	fr := startFake(t, 2)
	alice, ka, bob := pairInDev(t, fr)
	if alice.Rev() != 2 || bob.Rev() != 2 {
		t.Fatalf("revisions %d and %d with a revision-2 relay", alice.Rev(), bob.Rev())
	}
	lost := map[string]bool{}
	fr.setDrop(func(to string, f *wire.Frame) bool {
		if to != "alice" || f.T != wire.FrameChat || f.Text == "last" || lost[f.Room+f.Text] {
			return false
		}
		lost[f.Room+f.Text] = true // the first copy of every chat but the last
		return true
	})
	texts := []string{"one", "two", "three", "four", "last"}
	for _, text := range texts {
		fr.event("dev", wire.Frame{T: wire.FrameChat, From: "carol", ID: 1, Text: text})
		fr.event(wire.RoomMain, wire.Frame{T: wire.FrameChat, From: "carol", ID: 2, Text: text})
	}
	ka.waitEvent(t, "the last chat in dev", chatIn("dev", "last"))
	ka.waitEvent(t, "the last chat in main", chatIn(wire.RoomMain, "last"))
	for _, room := range []string{"dev", wire.RoomMain} {
		var got []string
		var seqs []uint64
		for _, e := range ka.events() {
			if e.Type == client.EventChat && e.Room == room {
				got, seqs = append(got, e.Text), append(seqs, e.Seq)
			}
		}
		if !slices.Equal(got, texts) {
			t.Errorf("%s: chats %q, want %q once each in order", room, got, texts)
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Errorf("%s: seqs %v", room, seqs)
			}
		}
	}
	if fr.compact.Load() == 0 {
		t.Fatal("the relay sent no compact datagram: the test tests nothing")
	}
	repaired := map[string]bool{}
	for _, g := range fr.frames(wire.FrameRepair) {
		if g.from == "alice" {
			repaired[g.f.Room] = true
		}
	}
	if !repaired["dev"] || !repaired[wire.RoomMain] {
		t.Errorf("repairs in %v, want dev and main", repaired)
	}
}
