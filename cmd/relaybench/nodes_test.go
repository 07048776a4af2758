//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestNodesScenario runs nodes2 as a user would (the command, flags in,
// JSON out) in a tiny version, a ladder of 10 members at two rates, on the
// relay built from this tree, with v2 and with classic members: every set-up
// delivers every chat once and in order; in the two-node set-up the members
// on each relay get the chats sent on the other, exactly as many as the
// split says; the nats-server's CPU is known where there is one; and the
// report has the four set-ups, the comparison and a verdict.
func TestNodesScenario(t *testing.T) {
	for _, proto := range []string{"v2", "classic"} {
		t.Run(proto, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"--relay-bin", relayBin(t), "--scenario", "nodes2", "--proto", proto, "--nodes-members", "10",
				"--nodes-deliveries", "2000,4000", "--duration", "300ms", "--stop-after", "0", "--json"}, &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			var rep Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			checkNodesReport(t, &rep, proto)
		})
	}
}

func checkNodesReport(t *testing.T, rep *Report, proto string) {
	t.Helper()
	n := rep.Nodes
	if n == nil || n.Proto != proto || n.Members != 10 || len(rep.Failures) != 0 {
		t.Fatalf("nodes report %+v, failures %q", n, rep.Failures)
	}
	base := relayV2
	if proto == "classic" {
		base = relayClassic
	}
	wantRelays := []string{base, base + "-durable", base + "-1node", base + "-2nodes"}
	var relays, stores []string
	for _, r := range n.Relays {
		relays, stores = append(relays, r.Relay), append(stores, r.Store)
	}
	if !slices.Equal(relays, wantRelays) || !slices.Equal(stores, []string{"memory", "data-dir", "nats", "nats"}) {
		t.Fatalf("set-ups %q in %q", relays, stores)
	}
	var names []string
	for _, s := range rep.Scenarios {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"nodes2-latency", "nodes2-room10"}) {
		t.Fatalf("phases %q", names)
	}
	for _, s := range rep.Scenarios {
		perNode := int64(s.Members / 2) // members are dealt out in turn: half on each relay
		seen := map[string]int{}
		for _, st := range s.Results {
			seen[st.Relay]++
			t.Logf("%s: %s at %d chats/s: sent %d, delivered %d of %d, by node %v, relay CPU %.2f µs/deliv, nats-server %.2f µs/deliv",
				s.Name, st.Relay, st.OfferedRate, st.Sent, st.Delivered, st.Expected, st.ByNode, st.CPUusPerDeliv, st.BrokerUsPerDel)
			if st.Sent == 0 || st.Expected != st.Sent*int64(s.Members-1) || st.Delivered != st.Expected || st.Foreign != 0 {
				t.Errorf("%s: %s: sent %d, delivered %d of %d, foreign %d", s.Name, st.Relay, st.Sent, st.Delivered, st.Expected, st.Foreign)
			}
			if st.Duplicates != 0 || st.Reordered != 0 || st.Stale != 0 {
				t.Errorf("%s: %s: duplicates %d, reordered %d, stale %d", s.Name, st.Relay, st.Duplicates, st.Reordered, st.Stale)
			}
			if wantEchoes := map[string]int64{"v2": st.Sent, "classic": 0}[proto]; st.Echoes != wantEchoes {
				t.Errorf("%s: %s: %d echoes, want %d", s.Name, st.Relay, st.Echoes, wantEchoes)
			}
			if st.RelayCPUs < 0 {
				t.Errorf("%s: %s: relay CPU unknown", s.Name, st.Relay)
			}
			nats := strings.HasSuffix(st.Relay, "node") || strings.HasSuffix(st.Relay, "nodes")
			if nats != (st.BrokerCPUs != 0) || st.BrokerCPUs < 0 {
				t.Errorf("%s: %s: nats-server CPU %v s (want known with --nats, absent without)", s.Name, st.Relay, st.BrokerCPUs)
			}
			if st.Relay != base+"-2nodes" {
				if st.ByNode != nil {
					t.Errorf("%s: %s: deliveries by node %v on one relay", s.Name, st.Relay, st.ByNode)
				}
				continue
			}
			// Two of the four senders are on each relay: each chat reaches
			// the other perNode-1 members on its sender's relay and the
			// perNode on the other.
			sentEach := st.Sent / 2
			want := [][]int64{{sentEach * (perNode - 1), sentEach * perNode}, {sentEach * perNode, sentEach * (perNode - 1)}}
			if !slices.EqualFunc(st.ByNode, want, slices.Equal[[]int64]) {
				t.Errorf("%s: %s: deliveries by [sender's relay][receiver's relay] %v, want %v", s.Name, st.Relay, st.ByNode, want)
			}
		}
		steps := map[string]int{"nodes2-latency": 1, "nodes2-room10": 2}[s.Name] // a ladder may add a step between a pass and a failure
		for _, r := range wantRelays {
			if seen[r] < steps {
				t.Errorf("%s: %s ran %d steps, want %d at least", s.Name, r, seen[r], steps)
			}
		}
	}
	if !n.Across || len(n.ByNode) != 2 || n.ByNode[0][1] == 0 || n.ByNode[1][0] == 0 {
		t.Errorf("across %v, by node %v: want chats from each relay's members on the other's", n.Across, n.ByNode)
	}
	if len(n.Compare) < 2 || n.Compare[0].OfferedRate != 222 || n.Compare[1].OfferedRate != 444 {
		t.Errorf("compare %+v: want the rates 222 and 444 chats/s", n.Compare)
	}
	for _, r := range n.Relays {
		if (r.Store == "nats") != (r.LatBroker >= 0) || r.LatP99us <= 0 || r.LatCPU <= 0 {
			t.Errorf("set-up %+v: latency figures", r)
		}
	}
	var human bytes.Buffer
	printReport(&human, rep)
	for _, want := range []string{"== nodes2-latency: 20 members,", "== nodes2-room10: 10 members,", "== nodes2: a room on two relays",
		"PASS: in every step of two nodes, members on each relay got chats sent on the other", "one node's relay CPU per delivery"} {
		if !strings.Contains(human.String(), want) {
			t.Errorf("the report does not say %q:\n%s", want, human.String())
		}
	}
}

func TestParseNodesFlags(t *testing.T) {
	c, err := parse([]string{"--scenario", "nodes2"}, &bytes.Buffer{})
	if err != nil || c.nodes.Members != 100 || c.nodes.Proto != ProtoV2 || !slices.Equal(c.nodes.Deliveries, deliveryLadder) || c.timeLimit != nodesTimeLimit {
		t.Errorf("defaults: %+v, time limit %v, %v", c.nodes, c.timeLimit, err)
	}
	c, err = parse([]string{"--nodes-members", "10", "--proto", "classic", "--nodes-deliveries", "100, 200"}, &bytes.Buffer{})
	if err != nil || c.scenario != nodesScenario || c.nodes.Proto != ProtoClassic || !slices.Equal(c.nodes.Deliveries, []int{100, 200}) {
		t.Errorf("--nodes-members alone: scenario %q, %+v, %v", c.scenario, c.nodes, err)
	}
	bad := [][]string{
		{"--scenario", "room100", "--nodes-members", "10"},
		{"--scenario", "nodes2", "--members", "10"},
		{"--scenario", "nodes2", "--relays", "chatrelay"},
		{"--scenario", "nodes2", "--rates", "100"},
		{"--scenario", "nodes2", "--proto", "both"},
		{"--nodes-members", "3"},
		{"--nodes-deliveries", "1,x"},
	}
	for _, args := range bad {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q): no error", args)
		}
	}
}
