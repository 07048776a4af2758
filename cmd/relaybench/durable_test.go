//go:build linux

package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSmokeDurable runs the durable relays as TestSmoke runs the others,
// and checks that each start got a fresh --data-dir that holds the room's
// stream while the relay runs and is gone once it stopped.
func TestSmokeDurable(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	e := &env{tmp: t.TempDir(), logs: devnull, stderr: devnull, start: time.Now()}
	for _, name := range durableRelays {
		t.Run(name, func(t *testing.T) {
			e.relayBin = relayBin(t)
			p, addr, proto, err := e.startRelay(name, defaultBudget)
			if err != nil {
				t.Fatal(err)
			}
			defer p.stop()
			if want := map[bool]Proto{false: ProtoClassic, true: ProtoV2}[isV2(name)]; proto != want {
				t.Errorf("proto %v, want %v", proto, want)
			}
			dir := dataDirOf(t, p)
			smokeSteps(t, p, addr, proto)
			if !holdsRoomStream(dir) {
				t.Errorf("--data-dir %s holds no room stream after the steps", dir)
			}
			p.stop()
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("--data-dir %s still there after the relay stopped (%v)", dir, err)
			}
		})
	}
	if ents, err := os.ReadDir(e.tmp); err != nil || slices.ContainsFunc(ents, func(d os.DirEntry) bool { return strings.HasPrefix(d.Name(), "data-") }) {
		t.Errorf("data dirs left in %s: %v %v", e.tmp, ents, err)
	}
}

// dataDirOf is the directory after --data-dir on p's command line.
func dataDirOf(t *testing.T, p *proc) string {
	t.Helper()
	i := slices.Index(p.cmd.Args, "--data-dir")
	if i < 0 || i+1 >= len(p.cmd.Args) {
		t.Fatalf("no --data-dir in %q", p.cmd.Args)
	}
	return p.cmd.Args[i+1]
}

// holdsRoomStream reports whether the embedded JetStream in dir stored a
// room (a stream named CHATRELAY_ROOM_...).
func holdsRoomStream(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "CHATRELAY_ROOM_") {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

func TestParseDurable(t *testing.T) {
	c, err := parse([]string{"--relays", "chatrelay,chatrelay-durable", "--proto", "both"}, &bytes.Buffer{})
	if want := []string{relayClassic, relayV2, relayDurable, relayV2Durable}; err != nil || !slices.Equal(c.relays, want) {
		t.Errorf("--proto both: %v %v, want %v", c.relays, err, want)
	}
	c, err = parse([]string{"--relays", "chatrelay-v2-durable"}, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.relays, []string{relayV2Durable}) {
		t.Errorf("--relays chatrelay-v2-durable: %v %v", c.relays, err)
	}
	// latency runs chatrelay-durable (one step); the ladders do not.
	ps, _ := presets("all")
	for _, p := range ps {
		if got, want := contains(p.relays, relayDurable), p.name == "latency"; got != want {
			t.Errorf("%s: runs %s: %v, want %v (relays %v)", p.name, relayDurable, got, want, p.relays)
		}
	}
	if !slices.Equal(allRelays, []string{relayClassic, relayV2, refNaive, refBatch, refCoalesce, refNATS}) {
		t.Errorf("allRelays changed: %v", allRelays)
	}
}
