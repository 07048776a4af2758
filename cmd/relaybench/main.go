//go:build linux

// Command relaybench measures chatrelay against two reference relays of its
// own (a naive one-syscall-per-datagram loop and a recvmmsg/sendmmsg batch
// loop standing for the kernel's limit) on the same classic-protocol load, on
// loopback, and prints a side-by-side table (or JSON).
//
//	go run ./cmd/relaybench --rates 500,1000,2000,3000
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
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	relayBin  string
	relays    []string
	rates     []int
	sc        Scenario
	jsonOut   bool
	serveRef  string
	listen    string
	relayLogs bool
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.relayBin, "relay-bin", "", "chatrelay daemon `path` (default: go build ./cmd/relay into a temp dir)")
	relays := fs.String("relays", "chatrelay,naive,batch", "relays to run, in order: chatrelay, naive, batch")
	fs.IntVar(&c.sc.Members, "members", 100, "members in the room, each its own UDP socket")
	fs.IntVar(&c.sc.Senders, "senders", 4, "members that send")
	rate := fs.Int("rate", 1000, "offered chats/s, all senders together")
	rates := fs.String("rates", "", "comma-separated offered rates, stepped (overrides --rate)")
	fs.DurationVar(&c.sc.Duration, "duration", 3*time.Second, "sending time per step")
	fs.IntVar(&c.sc.Receivers, "receivers", 2, "receiver goroutines, each with its own epoll over its share of sockets")
	fs.IntVar(&c.sc.RcvBuf, "rcvbuf", 4<<20, "receive buffer `bytes` per member socket (SO_RCVBUFFORCE, else SO_RCVBUF)")
	fs.DurationVar(&c.sc.Drain, "drain", 2*time.Second, "longest wait for late deliveries after the last send")
	fs.BoolVar(&c.jsonOut, "json", false, "print JSON instead of a table")
	fs.BoolVar(&c.relayLogs, "relay-logs", false, "pass the relays' stderr through")
	fs.StringVar(&c.serveRef, "serve-ref", "", "internal: serve a reference relay (naive or batch) on --listen")
	fs.StringVar(&c.listen, "listen", "", "internal: address for --serve-ref")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.relays = strings.Split(*relays, ",")
	for _, r := range c.relays {
		if r != "chatrelay" && r != "naive" && r != "batch" {
			return c, fmt.Errorf("--relays: unknown relay %q", r)
		}
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
	switch {
	case c.sc.Members < 2 || c.sc.Members > 20000:
		return c, errors.New("--members: 2 to 20000")
	case c.sc.Senders < 1 || c.sc.Senders > c.sc.Members || c.sc.Senders > 99:
		return c, errors.New("--senders: 1 to min(members, 99)")
	case c.sc.Duration <= 0 || c.sc.Duration > 10*time.Minute:
		return c, errors.New("--duration: positive, at most 10m")
	case c.sc.Receivers < 1 || c.sc.Receivers > 64:
		return c, errors.New("--receivers: 1 to 64")
	case c.sc.Drain < 0 || c.sc.Drain > time.Minute:
		return c, errors.New("--drain: 0 to 1m")
	}
	return c, nil
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
		return serveRef(c.serveRef, c.listen, stderr)
	}
	results, err := bench(c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "relaybench:", err)
		return 1
	}
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(results)
	} else {
		printTable(stdout, results)
	}
	return 0
}

// serveRef runs a reference relay until SIGTERM/SIGINT.
func serveRef(kind, listen string, stderr io.Writer) int {
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
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; conn.Close() }()
	switch kind {
	case "naive":
		serveNaive(conn)
	case "batch":
		serveBatch(conn)
	default:
		fmt.Fprintln(stderr, "relaybench: --serve-ref: want naive or batch")
		return 2
	}
	return 0
}

func bench(c config, stderr io.Writer) ([]Result, error) {
	tmp, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	relayBin := c.relayBin
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
	var results []Result
	for _, rate := range c.rates {
		sc := c.sc
		sc.Rate = rate
		first := len(results)
		for _, name := range c.relays {
			addr, err := freeUDPPort()
			if err != nil {
				return nil, err
			}
			var path string
			var args []string
			switch name {
			case "chatrelay":
				if relayBin == "" {
					if relayBin, err = buildRelay(tmp); err != nil {
						return nil, err
					}
				}
				path = relayBin
				args = []string{"--listen", addr.String(), "--metrics-listen", "", "--admin-socket", tmp + "/admin.sock",
					"--flood", "off", "--log-level", "warn"}
			default:
				path = self
				args = []string{"--serve-ref", name, "--listen", addr.String()}
			}
			fmt.Fprintf(stderr, "relaybench: %s, %d members, %d senders, %d chats/s for %v ...\n", name, sc.Members, sc.Senders, rate, sc.Duration)
			p, err := startProc(path, args, addr, logs)
			if err != nil {
				return nil, err
			}
			r, err := runLoad(addr, sc, p.cpu)
			p.stop()
			if err != nil {
				return nil, fmt.Errorf("%s at %d chats/s: %w", name, rate, err)
			}
			r.Relay = name
			results = append(results, r)
		}
		byRelay := map[string]*Result{}
		for i := first; i < len(results); i++ {
			byRelay[results[i].Relay] = &results[i]
		}
		for i := first; i < len(results); i++ {
			r := &results[i]
			if n := byRelay["naive"]; n != nil && n.DeliveriesPerS > 0 {
				r.VsNaive = r.DeliveriesPerS / n.DeliveriesPerS
			}
			if b := byRelay["batch"]; b != nil && b.DeliveriesPerS > 0 {
				r.VsBatch = r.DeliveriesPerS / b.DeliveriesPerS
			}
		}
	}
	return results, nil
}

func printTable(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "relay\toffered/s\tsent\tdeliveries/s\tratio\tdups\treord\tp50 µs\tp99 µs\tp99.9 µs\tmax µs\tCPU µs/deliv\tvs naive\tvs batch\ttool\t")
	for _, r := range rs {
		cpu := "?"
		if r.RelayCPUs >= 0 {
			cpu = fmt.Sprintf("%.2f", r.CPUusPerDeliv)
		}
		tool := fmt.Sprintf("%.2f/%.2f", r.ToolCPUcores, r.RecvThreadMax)
		if r.ToolSaturated {
			tool += " SATURATED"
		}
		ratio := func(v float64) string {
			if v == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.4f\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t\n",
			r.Relay, r.OfferedRate, r.Sent, r.DeliveriesPerS, r.Ratio, r.Duplicates, r.Reordered,
			r.P50us, r.P99us, r.P999us, r.MaxUs, cpu, ratio(r.VsNaive), ratio(r.VsBatch), tool)
	}
	tw.Flush()
	fmt.Fprintf(w, "tool = load tool CPU in cores (whole process / busiest receiver thread); %d CPUs\n", runtime.NumCPU())
}
