//go:build linux

// Command relaybench measures chatrelay (classic and v2 members) against
// reference relays of its own, on the same load, on loopback, and prints
// side-by-side tables (or JSON) and, with --plot, charts against room size.
// The references: a naive one-syscall-per-datagram loop, a recvmmsg/sendmmsg
// batch loop (the kernel's limit for one datagram per delivery), a batch loop
// that coalesces each read batch's chats per recipient (the limit for what
// framing costs), and an embedded nats-server (core pub/sub over TCP).
//
//	go run ./cmd/relaybench --rates 500,1000,2000,3000
//	go run ./cmd/relaybench --scenario all --plot docs/bench
//	go run ./cmd/relaybench --scenario joinstorm   # 10,000 classic logins at 1,000/s, then a chat
//	go run ./cmd/relaybench --scenario rooms1000   # CPU per delivery: 1,000 rooms of 10 against room100
//	go run ./cmd/relaybench --scenario nodes2      # room100 on two --nats relays against one, with in-memory and --data-dir
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatrelay/chatrelay/relay/sched"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Relay names: chatrelay with classic members, chatrelay with v2 members,
// and the references.
const (
	relayClassic  = "chatrelay"
	relayV2       = "chatrelay-v2"
	refNaive      = "naive"
	refBatch      = "batch"
	refCoalesce   = "coalesce"
	refNATS       = "nats"
	defaultBudget = 1200
)

var (
	allRelays  = []string{relayClassic, relayV2, refNaive, refBatch, refCoalesce, refNATS}
	references = []string{refNaive, refBatch, refCoalesce, refNATS}
)

type config struct {
	relayBin    string
	relays      []string
	relaysSet   bool
	rates       []int
	sc          Scenario
	durationSet bool
	scenario    string
	plotDir     string
	jsonOut     bool
	jsonFile    string
	serveRef    string
	listen      string
	storeDir    string
	relayLogs   bool
	stopAfter   int
	bisect      int // steps between a ladder's best pass and first failure, each halving the gap
	retries     int // times a ladder step not sustained is run again before it counts as failed
	alternate   bool
	timeLimit   time.Duration
	storm       stormConfig // --scenario joinstorm
	rooms       roomsConfig // --scenario rooms1000
	nodes       nodesConfig // --scenario nodes2
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.relayBin, "relay-bin", "", "chatrelay daemon `path` (default: go build ./cmd/relay into a temp dir)")
	relays := fs.String("relays", "chatrelay,naive,batch", "relays to run, in order: "+strings.Join(append(allRelays, durableRelays...), ", ")+" (with --scenario: all six unless given; latency adds chatrelay-durable)")
	proto := fs.String("proto", "classic", "what the chatrelay (and chatrelay-durable) entry of --relays speaks: classic, v2 (chatrelay-v2), or both; with --scenario nodes2, what its members speak: v2 unless given, or classic")
	fs.IntVar(&c.sc.Members, "members", 100, "members in the room, each its own socket")
	fs.IntVar(&c.sc.Senders, "senders", 4, "members that send")
	rate := fs.Int("rate", 1000, "offered chats/s, all senders together")
	rates := fs.String("rates", "", "comma-separated offered rates, stepped (overrides --rate)")
	fs.DurationVar(&c.sc.Duration, "duration", 3*time.Second, "sending time per step (scenarios choose their own unless given)")
	fs.IntVar(&c.sc.Receivers, "receivers", 2, "receiver goroutines, each with its own epoll over its share of sockets")
	fs.IntVar(&c.sc.RcvBuf, "rcvbuf", 16<<20, "receive buffer `bytes` per UDP member socket (SO_RCVBUFFORCE, else SO_RCVBUF; the kernel doubles it)")
	fs.DurationVar(&c.sc.Drain, "drain", 2*time.Second, "longest wait for late deliveries after the last send")
	fs.IntVar(&c.sc.Budget, "budget", defaultBudget, "largest datagram in `bytes` when frames are packed: chatrelay-v2's --send-budget and the coalesce reference's")
	fs.StringVar(&c.scenario, "scenario", "", "preset: room10, room100, room1000, latency, v2room100, or all (the ladders); or joinstorm (10,000 classic logins at 1,000/s with retries, then a chat: see --storm-*; not part of all); or rooms1000 (relay CPU per delivery in 1,000 rooms of 10 v2 members against one room of 100, on one ladder of offered deliveries/s, the steps alternating: see --rooms-*; not part of all); or nodes2 (a room on two relays sharing one NATS JetStream server against one relay on it, in memory and --data-dir: p99 at 20 x 200 chats/s, then the room100 ladder, the relays' steps alternating: see --nodes-*; not part of all)")
	fs.StringVar(&c.plotDir, "plot", "", "write SVG and PNG charts against room size into `dir` (room scenarios)")
	fs.IntVar(&c.stopAfter, "stop-after", -1, "a relay stops climbing the rates after this many steps below 99.9% (0: run every rate; default 1 with --scenario, else 0)")
	fs.IntVar(&c.retries, "retries", -1, "on a ladder, a step not sustained (and not limited by the load tool) is run again at the same rate, after the other relays' turns at it, up to this many times; the rate is sustained if one run of it is, and every run is reported (0: never; default 1 with --scenario, else 0)")
	fs.IntVar(&c.bisect, "bisect", 2, "on a room ladder, steps between a relay's best sustained rate and its first failure, each at the geometric mean of the two (1: to about x1.22; 2: x1.11; 3: x1.05)")
	fs.BoolVar(&c.alternate, "alternate", true, "on a room ladder, start every relay at once and let them take turns at each rate (false: one relay's whole ladder after another's)")
	fs.DurationVar(&c.timeLimit, "time-limit", 0, "skip the steps that would start after this much time (0: none; --scenario all: 12m)")
	fs.BoolVar(&c.jsonOut, "json", false, "print JSON instead of tables")
	fs.StringVar(&c.jsonFile, "json-file", "", "also write the JSON report to `path` (tables still print)")
	fs.BoolVar(&c.relayLogs, "relay-logs", false, "pass the relays' stderr through")
	fs.StringVar(&c.serveRef, "serve-ref", "", "internal: serve a reference relay (naive, batch, coalesce or nats) on --listen, or jetstream (nats-server with JetStream in --store-dir, for nodes2)")
	fs.StringVar(&c.listen, "listen", "", "internal: address for --serve-ref")
	fs.IntVar(&c.sc.RefSenders, "ref-senders", defaultRefSenders, "sender threads of the batch and coalesce references, each on its own dup of the socket")
	fs.StringVar(&c.storeDir, "store-dir", "", "internal: JetStream's `directory` for --serve-ref jetstream")
	defineStormFlags(fs, &c.storm)
	defineRoomsFlags(fs, &c.rooms)
	defineNodesFlags(fs, &c.nodes)
	defineV2Flags(fs, &c.sc)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "relays":
			c.relaysSet = true
		case "duration":
			c.durationSet = true
		}
	})
	for _, r := range strings.Split(*relays, ",") {
		r = strings.TrimSpace(r)
		if !known(r) {
			return c, fmt.Errorf("--relays: unknown relay %q (want %s)", r, strings.Join(append(allRelays, durableRelays...), ", "))
		}
		if v2, ok := v2Of[r]; ok {
			switch *proto {
			case "classic":
			case "v2":
				r = v2
			case "both":
				c.relays = append(c.relays, r)
				r = v2
			default:
				return c, fmt.Errorf("--proto %q: want classic, v2 or both", *proto)
			}
		}
		c.relays = append(c.relays, r)
	}
	c.rates = []int{*rate}
	if *rates != "" {
		c.rates = nil
		for _, f := range strings.Split(*rates, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v < 1 || v > 1_000_000 {
				return c, fmt.Errorf("--rates: bad rate %q", f)
			}
			c.rates = append(c.rates, v)
		}
	}
	if err := checkStormFlags(fs, &c); err != nil {
		return c, err
	}
	if err := checkRoomsFlags(fs, &c); err != nil {
		return c, err
	}
	if err := checkNodesFlags(fs, &c); err != nil {
		return c, err
	}
	if c.scenario != "" {
		if _, err := presets(c.scenario); err != nil {
			return c, err
		}
	}
	switch {
	case c.sc.Members < 2 || c.sc.Members > 20000:
		return c, errors.New("--members: 2 to 20000")
	case c.sc.Senders < 1 || c.sc.Senders > c.sc.Members || c.sc.Senders > 99:
		return c, errors.New("--senders: 1 to min(members, 99)")
	case c.sc.Duration <= 0 || c.sc.Duration > 10*time.Minute:
		return c, errors.New("--duration: positive, at most 10m")
	case c.sc.RefSenders < 1 || c.sc.RefSenders > 64:
		return c, errors.New("--ref-senders: 1 to 64")
	case c.sc.Receivers < 1 || c.sc.Receivers > 64:
		return c, errors.New("--receivers: 1 to 64")
	case c.sc.Drain < 0 || c.sc.Drain > time.Minute:
		return c, errors.New("--drain: 0 to 1m")
	case c.sc.Budget < 512 || c.sc.Budget > 65507:
		return c, errors.New("--budget: 512 to 65507")
	case c.stopAfter < -1:
		return c, errors.New("--stop-after: 0 or more")
	case c.bisect < 0 || c.bisect > 5:
		return c, errors.New("--bisect: 0 to 5")
	case c.retries < -1 || c.retries > 3:
		return c, errors.New("--retries: 0 to 3")
	case c.timeLimit < 0:
		return c, errors.New("--time-limit: 0 or more")
	}
	if c.stopAfter < 0 {
		c.stopAfter = 0
		if c.scenario != "" {
			c.stopAfter = 1
		}
	}
	if c.retries < 0 {
		c.retries = 0
		if c.scenario != "" {
			c.retries = 1
		}
	}
	if c.timeLimit == 0 && c.scenario == "all" {
		c.timeLimit = 12 * time.Minute
	}
	if c.timeLimit == 0 && c.scenario == nodesScenario {
		c.timeLimit = nodesTimeLimit
	}
	return c, nil
}

func known(r string) bool {
	return contains(allRelays, r) || contains(durableRelays, r)
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "relaybench:", err)
		return 2
	}
	if c.serveRef != "" {
		return serveRef(c.serveRef, c.listen, c.storeDir, c.sc.Budget, c.sc.RefSenders, stderr)
	}
	rep, err := bench(c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "relaybench:", err)
		return 1
	}
	if c.plotDir != "" {
		files, err := writePlots(c.plotDir, rep)
		if err != nil {
			fmt.Fprintln(stderr, "relaybench: --plot:", err)
			return 1
		}
		fmt.Fprintf(stderr, "relaybench: wrote %s\n", strings.Join(files, ", "))
	}
	if c.jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(c.jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "relaybench: --json-file:", err)
			return 1
		}
	}
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReport(stdout, rep)
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintf(stderr, "relaybench: %d relay runs failed:\n  %s\n", len(rep.Failures), strings.Join(rep.Failures, "\n  "))
		return 1
	}
	return 0
}

// serveRef runs a reference relay (or, for jetstream, the NATS server of
// nodes2, storing in storeDir) until SIGTERM/SIGINT.
func serveRef(kind, listen, storeDir string, budget, senders int, stderr io.Writer) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if kind == refNATS || kind == serveJetStream {
		port, err := natsPort(listen)
		if err != nil {
			fmt.Fprintln(stderr, "relaybench: --listen:", err)
			return 2
		}
		if (kind == serveJetStream) != (storeDir != "") {
			fmt.Fprintln(stderr, "relaybench: --store-dir: with --serve-ref jetstream, and only with it")
			return 2
		}
		s, err := startNATS(port, storeDir)
		if err != nil {
			fmt.Fprintln(stderr, "relaybench:", err)
			return 1
		}
		<-sig
		stopNATS(s)
		return 0
	}
	if kind == refBatch || kind == refCoalesce {
		fastShards = senders
		// The locked threads (reader, senders) block in syscalls: with a P for each, one
		// that wakes never waits for sysmon to take a P back.
		runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), fastShards+2))
		// SCHED_BATCH, as the relay daemon runs by default: on this
		// 2-core machine 4-5% less CPU per room10 delivery for the loops
		// (docs/BENCHMARKS.md, issue 11 round eleven). The naive loop, the
		// latency step's reference, keeps the system's policy.
		if _, err := sched.Set(sched.Batch); err != nil {
			fmt.Fprintln(stderr, "relaybench: reference loop:", err)
		}
		f, err := startFastRef(listen, kind == refCoalesce, budget)
		if err != nil {
			fmt.Fprintln(stderr, "relaybench:", err)
			return 1
		}
		<-sig
		f.stop()
		return 0
	}
	ua, err := net.ResolveUDPAddr("udp4", listen)
	if err != nil {
		fmt.Fprintln(stderr, "relaybench:", err)
		return 2
	}
	conn, err := net.ListenUDP("udp4", ua)
	if err != nil {
		fmt.Fprintln(stderr, "relaybench:", err)
		return 1
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	go func() { <-sig; conn.Close() }()
	switch kind {
	case refNaive:
		serveNaive(conn)
	default:
		conn.Close()
		fmt.Fprintln(stderr, "relaybench: --serve-ref: want naive, batch, coalesce, nats or jetstream")
		return 2
	}
	return 0
}

// printReport prints each scenario's steps and summary.
func printReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "machine: %d CPUs, kernel %s, %s, load average at start %s\n", rep.Machine.CPUs, rep.Machine.Kernel, rep.Machine.Go, rep.Machine.LoadAvg)
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "\n== %s\n", s.Title())
		if len(s.Results) > 0 {
			printSteps(w, s.Results)
		}
		fmt.Fprintln(w)
		printSummary(w, s.Summary)
		for _, n := range s.Notes {
			fmt.Fprintln(w, "note:", n)
		}
	}
	if rep.Storm != nil {
		printStorm(w, rep.Storm)
	}
	if rep.Rooms != nil {
		printRooms(w, rep.Rooms)
	}
	if rep.Nodes != nil {
		printNodes(w, rep.Nodes)
	}
	fmt.Fprintf(w, "\nelapsed %.1f s\n", rep.ElapsedS)
}

func runtimeInfo() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}
