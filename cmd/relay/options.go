package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/sched"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// Options is everything the daemon can be told on its command line, in its
// config file or in its environment (config.go). Each field's default is
// set in one place, defaultOptions.
type Options struct {
	Listen         string        // UDP address members send to
	MetricsListen  string        // HTTP address of /metrics and /healthz; "" disables
	AdminSocket    string        // path of the admin Unix socket
	Workers        int           // worker pool size
	Queue          int           // datagrams waiting for a worker, all senders
	SenderQueue    int           // datagrams waiting for a worker, one sender
	MaxDatagram    int           // bytes; longer datagrams are dropped
	MaxMembers     int           // members on the relay
	MaxRooms       int           // rooms on the relay
	RoomsPerMember int           // rooms one member may be in
	AnnounceLimit  int           // room size above which joins and leaves are announced in batches (-1: never)
	MaxPerIP       int           // sessions per source IP (-1: no cap)
	PerIPLoopback  bool          // apply MaxPerIP to loopback too
	Lang           string        // en or zh
	LogLevel       string        // debug, info, warn, error
	LogFormat      string        // console or json
	DrainTimeout   time.Duration // how long shutdown waits for queued datagrams
	Classic        string        // on or off: serve the classic protocol
	V2Timeout      time.Duration // evict a silent v2 session after this
	ClassicIdle    time.Duration // evict an idle classic member after this
	Ring           int           // recent events kept for repair
	Backlog        int           // events a joining v2 member receives as history
	SendBudget     int           // bytes per v2 datagram when packing frames
	LoopbackBudget int           // the same for members on loopback (-1: as SendBudget)
	Flood          string        // on or off
	ChatRate       float64       // chats per second per session
	ChatBurst      int           // chats at once per session
	DatagramRate   float64       // datagrams per second per source IP:port
	DatagramBurst  int           // datagrams at once per source
	LimitExempt    string        // comma-separated prefixes exempt from login bans
	Readers        int           // UDP sockets on --listen (SO_REUSEPORT), one reader each
	Batch          string        // on or off: many datagrams per system call
	Sched          string        // batch or normal: the Linux scheduling policy of the daemon's threads
	FanoutShards   int           // goroutines that may send the fan-out at once (0: sixteen per CPU, at most 64)
	DataDir        string        // "" keeps rooms in memory; else an embedded JetStream stores them here
	History        int           // with DataDir: events each room keeps
	HistoryAge     time.Duration // with DataDir or NATS: events older are dropped (0: never)
	NATS           string        // comma-separated URLs of a NATS cluster shared with other relays; "" for none
	NATSCreds      string        // credentials file for NATS
	NATSTLSCA      string        // CA file to verify NATS servers
	NATSTLSCert    string        // client certificate for NATS
	NATSTLSKey     string        // its key
	NATSReplicas   int           // replicas of each room's stream and of the names bucket
	Node           string        // this relay's name in the cluster
	NameLease      time.Duration // with NATS: a dead relay's names are freed after this
	Config         string        // the YAML config file read; "" for none

	Rooms []relay.RoomSettings // config file only (key rooms): rooms that exist while empty
}

// defaultAdminSocket is $XDG_RUNTIME_DIR/chatrelay/admin.sock for a user
// session, /run/relay/admin.sock for root (the systemd unit's
// RuntimeDirectory), and /tmp/chatrelay-UID/admin.sock otherwise.
func defaultAdminSocket() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "chatrelay", "admin.sock")
	}
	if os.Geteuid() == 0 {
		return "/run/relay/admin.sock"
	}
	return filepath.Join(os.TempDir(), "chatrelay-"+strconv.Itoa(os.Geteuid()), "admin.sock")
}

func defaultOptions() Options {
	return Options{
		Listen:         ":9999",
		MetricsListen:  "127.0.0.1:9101",
		AdminSocket:    defaultAdminSocket(),
		Workers:        16,
		Queue:          relay.DefaultQueueLimit,
		SenderQueue:    relay.DefaultSenderQueueLimit,
		MaxDatagram:    wire.DefaultMaxDatagram,
		MaxMembers:     10000,
		MaxRooms:       10000,
		RoomsPerMember: 100,
		AnnounceLimit:  100,
		MaxPerIP:       16,
		Lang:           "en",
		LogLevel:       "info",
		LogFormat:      "console",
		DrainTimeout:   5 * time.Second,
		Classic:        "on",
		V2Timeout:      15 * time.Second,
		ClassicIdle:    time.Hour,
		Ring:           4096,
		Backlog:        20,
		SendBudget:     1200,
		LoopbackBudget: 8192,
		Flood:          "on",
		ChatRate:       float64(relay.DefaultFloodSettings().ChatRate),
		ChatBurst:      relay.DefaultFloodSettings().ChatBurst,
		DatagramRate:   float64(relay.DefaultFloodSettings().DatagramRate),
		DatagramBurst:  relay.DefaultFloodSettings().DatagramBurst,
		LimitExempt:    "127.0.0.0/8,::1/128",
		Readers:        1,
		Batch:          "on",
		Sched:          sched.Batch,
		History:        defaultHistory,
		NATSReplicas:   1,
		NameLease:      30 * time.Second,
	}
}

// node is --node, or the host's name (a pod's name in Kubernetes) when
// it is empty.
func (o Options) node() string {
	if o.Node != "" {
		return o.Node
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "relay"
}

// defaultHistory is --history: 10,000 events per room, a busy class's or
// team's day of chat, about 2 MB on disk per room at ~200 bytes an event,
// so that a member back after a day (or after a restart) still finds the
// conversation; --history-age defaults to none because an age would empty
// a quiet room over a weekend, and the count already bounds the disk.
const defaultHistory = 10000

// errHelp is returned when -h or --help was asked for: exit 0.
var errHelp = flag.ErrHelp

// defineFlags defines every setting of the daemon on fs, bound to o's
// fields, with o's values as defaults. It is the one list of settings: the
// config file's keys and the RELAY_* environment variables are derived
// from it (config.go), so a flag added here is a valid key and variable.
func defineFlags(fs *flag.FlagSet, o *Options) {
	fs.StringVar(&o.Config, configKey, o.Config, "YAML config `file` (also $RELAY_CONFIG); flags win over RELAY_* variables, which win over the file")
	fs.StringVar(&o.Listen, "listen", o.Listen, "UDP `address` members send to")
	fs.StringVar(&o.MetricsListen, "metrics-listen", o.MetricsListen, "HTTP `address` for /metrics and /healthz (empty disables)")
	fs.StringVar(&o.AdminSocket, "admin-socket", o.AdminSocket, "`path` of the admin Unix socket")
	fs.IntVar(&o.Workers, "workers", o.Workers, "worker pool size")
	fs.IntVar(&o.Queue, "queue", o.Queue, "datagrams that may wait for a worker, all senders together; beyond it they are dropped")
	fs.IntVar(&o.SenderQueue, "sender-queue", o.SenderQueue, "datagrams that may wait for a worker from one sender")
	fs.IntVar(&o.MaxDatagram, "max-datagram", o.MaxDatagram, "largest accepted datagram in `bytes`")
	fs.IntVar(&o.MaxMembers, "max-members", o.MaxMembers, "most members logged in")
	fs.IntVar(&o.MaxRooms, "max-rooms", o.MaxRooms, "most rooms on the relay, main and configured ones included")
	fs.IntVar(&o.RoomsPerMember, "max-rooms-per-member", o.RoomsPerMember, "most rooms one member may be in")
	fs.IntVar(&o.AnnounceLimit, "announce-limit", o.AnnounceLimit, "room size above which joins and leaves are announced in batches, once a second (-1: each one)")
	fs.IntVar(&o.MaxPerIP, "max-per-ip", o.MaxPerIP, "most sessions from one IP address (-1: no limit)")
	fs.BoolVar(&o.PerIPLoopback, "per-ip-loopback", o.PerIPLoopback, "apply --max-per-ip to loopback addresses too")
	fs.StringVar(&o.Lang, "lang", o.Lang, "wording of notices: en or zh")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log `level`: debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log `format`: console or json")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", o.DrainTimeout, "on shutdown, how long queued datagrams may take")
	fs.StringVar(&o.Classic, "classic", o.Classic, "serve the classic protocol: on, or off for relays reachable from the internet (classic clients cannot prove their address)")
	fs.DurationVar(&o.V2Timeout, "v2-timeout", o.V2Timeout, "evict a v2 session silent for longer (clients heartbeat every 2s)")
	fs.DurationVar(&o.ClassicIdle, "classic-idle", o.ClassicIdle, "evict a classic member idle for longer (classic clients cannot heartbeat)")
	fs.IntVar(&o.Ring, "ring", o.Ring, "recent events kept for v2 repair and history")
	fs.IntVar(&o.Backlog, "backlog", o.Backlog, "recent events a joining v2 member receives as history (0: none)")
	fs.StringVar(&o.Flood, "flood", o.Flood, "flood control: on, or off for benchmarks, load tools and trusted networks")
	fs.Float64Var(&o.ChatRate, "flood-chat-rate", o.ChatRate, "chats per second a session may sustain")
	fs.IntVar(&o.ChatBurst, "flood-chat-burst", o.ChatBurst, "chats a session may send at once")
	fs.Float64Var(&o.DatagramRate, "flood-datagram-rate", o.DatagramRate, "datagrams per second one source IP:port may sustain")
	fs.IntVar(&o.DatagramBurst, "flood-datagram-burst", o.DatagramBurst, "datagrams one source IP:port may send at once")
	fs.StringVar(&o.LimitExempt, "limit-exempt", o.LimitExempt, "comma-separated `prefixes` never banned for refused logins (empty: none)")
	fs.IntVar(&o.SendBudget, "send-budget", o.SendBudget, "largest v2 datagram, in `bytes`, when packing several frames")
	fs.IntVar(&o.LoopbackBudget, "send-budget-loopback", o.LoopbackBudget, "--send-budget for members on a loopback address (path MTU 64 KiB; -1: as --send-budget)")
	fs.IntVar(&o.Readers, "readers", o.Readers, "UDP sockets on --listen, one reader each (SO_REUSEPORT; Linux)")
	fs.StringVar(&o.Batch, "batch", o.Batch, "read and send many datagrams per system call (recvmmsg/sendmmsg): on, or off to compare")
	fs.StringVar(&o.Sched, "sched", o.Sched, "Linux scheduling policy of the daemon's threads: batch (a woken thread waits for the running one's slice: fewer context switches under load) or normal")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "`directory` where rooms' history is stored, by an embedded NATS JetStream server that opens no port (empty: history in memory, lost on restart)")
	fs.IntVar(&o.History, "history", o.History, "with --data-dir or --nats: events each room keeps on disk, for repair, backlog and history")
	fs.DurationVar(&o.HistoryAge, "history-age", o.HistoryAge, "with --data-dir or --nats: drop events older than this (0: keep them until --history pushes them out)")
	fs.StringVar(&o.NATS, "nats", o.NATS, "comma-separated `URLs` of a NATS cluster with JetStream that several relays share: every relay on it serves the same rooms and names (empty: this relay alone)")
	fs.StringVar(&o.NATSCreds, "nats-creds", o.NATSCreds, "with --nats: NATS credentials `file`")
	fs.StringVar(&o.NATSTLSCA, "nats-tls-ca", o.NATSTLSCA, "with --nats: CA `file` that signs the NATS servers' certificates")
	fs.StringVar(&o.NATSTLSCert, "nats-tls-cert", o.NATSTLSCert, "with --nats: client certificate `file`")
	fs.StringVar(&o.NATSTLSKey, "nats-tls-key", o.NATSTLSKey, "with --nats: client key `file`")
	fs.IntVar(&o.NATSReplicas, "nats-replicas", o.NATSReplicas, "with --nats: replicas of each room's stream and of the names (3 on a three-server cluster)")
	fs.StringVar(&o.Node, "node", o.Node, "this relay's `name` in the cluster (logs, NATS connection name; empty: the host's name)")
	fs.DurationVar(&o.NameLease, "name-lease", o.NameLease, "with --nats: a relay that dies frees its members' names after this")
	fs.IntVar(&o.FanoutShards, "fanout-shards", o.FanoutShards, "goroutines that may send the room's fan-out at once, each to its share of the members (0: sixteen per CPU, at most 64)")
}

// setUsage makes fs print the daemon's usage on w.
func setUsage(fs *flag.FlagSet, w io.Writer) {
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage:
  relay [--config FILE] [flags]    run the relay (SIGHUP re-reads FILE)
  relay config check FILE          validate FILE and print the effective configuration
  relay admin [--admin-socket PATH] [--json] notice TEXT... | who | kick NAME [REASON...] | stats
  relay health [--url URL | --metrics-listen ADDR]
  relay version

Every flag is also a key of the config file (max-members: 500) and an
environment variable (RELAY_MAX_MEMBERS=500). Flags win over the
environment, which wins over the file, which wins over the defaults.

Flags:
`)
		fs.PrintDefaults()
	}
}

// parseFlags fills Options from args through fs (nats-server's
// ConfigureOptions), so that flag parsing is testable. It reads the config
// file args name (--config) but no environment; the daemon uses
// loadConfig, which also reads RELAY_* variables.
func parseFlags(fs *flag.FlagSet, args []string, usageOut io.Writer) (Options, error) {
	c, err := loadConfig(fs, args, usageOut, noEnv)
	if err != nil {
		return defaultOptions(), err
	}
	return c.opts, nil
}

// optionError is a bad value of one setting. Error names the flag; the
// config loader names the file line or variable the value came from.
type optionError struct {
	key string // flag name
	msg string // what is wrong, usually starting with the value
}

func (e *optionError) Error() string { return "--" + e.key + " " + e.msg }

func bad(key, format string, args ...any) error {
	return &optionError{key: key, msg: fmt.Sprintf(format, args...)}
}

// validate reports the first setting that is out of range.
func (o Options) validate() error {
	switch {
	case o.Listen == "":
		return bad("listen", "must not be empty")
	case o.AdminSocket == "":
		return bad("admin-socket", "must not be empty")
	case o.Workers < 1:
		return bad("workers", "%d: must be at least 1", o.Workers)
	case o.Queue < 1:
		return bad("queue", "%d: must be at least 1", o.Queue)
	case o.SenderQueue < 1:
		return bad("sender-queue", "%d: must be at least 1", o.SenderQueue)
	case o.MaxDatagram < 16 || o.MaxDatagram > 65507:
		return bad("max-datagram", "%d: must be between 16 and 65507", o.MaxDatagram)
	case o.MaxMembers < 1:
		return bad("max-members", "%d: must be at least 1", o.MaxMembers)
	case o.MaxRooms < 1:
		return bad("max-rooms", "%d: must be at least 1", o.MaxRooms)
	case o.RoomsPerMember < 1:
		return bad("max-rooms-per-member", "%d: must be at least 1", o.RoomsPerMember)
	case o.AnnounceLimit == 0 || o.AnnounceLimit < -1:
		return bad("announce-limit", "%d: must be at least 1, or -1 to announce each join", o.AnnounceLimit)
	case o.MaxPerIP == 0 || o.MaxPerIP < -1:
		return bad("max-per-ip", "%d: must be at least 1, or -1 for no limit", o.MaxPerIP)
	case o.LogFormat != "console" && o.LogFormat != "json":
		return bad("log-format", "%q: want console or json", o.LogFormat)
	case o.DrainTimeout <= 0:
		return bad("drain-timeout", "%v: must be positive", o.DrainTimeout)
	case o.Classic != "on" && o.Classic != "off":
		return bad("classic", "%q: want on or off", o.Classic)
	case o.V2Timeout <= 0:
		return bad("v2-timeout", "%v: must be positive", o.V2Timeout)
	case o.ClassicIdle <= 0:
		return bad("classic-idle", "%v: must be positive", o.ClassicIdle)
	case o.Ring < 16:
		return bad("ring", "%d: must be at least 16", o.Ring)
	case o.Backlog < 0 || o.Backlog > o.Ring:
		return bad("backlog", "%d: must be between 0 and --ring (%d)", o.Backlog, o.Ring)
	case o.SendBudget < 512 || o.SendBudget > 65507:
		return bad("send-budget", "%d: must be between 512 and 65507", o.SendBudget)
	case o.LoopbackBudget != -1 && (o.LoopbackBudget < 512 || o.LoopbackBudget > 65507):
		return bad("send-budget-loopback", "%d: must be -1 (as --send-budget) or between 512 and 65507", o.LoopbackBudget)
	case o.Flood != "on" && o.Flood != "off":
		return bad("flood", "%q: want on or off", o.Flood)
	}
	if o.History < 16 {
		return bad("history", "%d: must be at least 16", o.History)
	}
	if o.HistoryAge < 0 {
		return bad("history-age", "%v: must not be negative", o.HistoryAge)
	}
	if o.DataDir != "" && o.Backlog > o.History {
		return bad("backlog", "%d: must not exceed --history (%d) with --data-dir", o.Backlog, o.History)
	}
	if o.NATS != "" {
		switch {
		case o.DataDir != "":
			return bad("nats", "%q: not with --data-dir (one node stores in its directory; several share a NATS cluster)", o.NATS)
		case o.Backlog > o.History:
			return bad("backlog", "%d: must not exceed --history (%d) with --nats", o.Backlog, o.History)
		case o.NATSReplicas < 1 || o.NATSReplicas > 5:
			return bad("nats-replicas", "%d: must be between 1 and 5", o.NATSReplicas)
		case o.NameLease < 3*time.Second:
			return bad("name-lease", "%v: must be at least 3s", o.NameLease)
		case (o.NATSTLSCert == "") != (o.NATSTLSKey == ""):
			return bad("nats-tls-cert", "give --nats-tls-cert and --nats-tls-key together")
		}
		for _, u := range strings.Split(o.NATS, ",") {
			if strings.TrimSpace(u) == "" {
				return bad("nats", "%q: an empty URL in the list", o.NATS)
			}
		}
	}

	if o.Readers < 1 || o.Readers > 64 {
		return bad("readers", "%d: must be between 1 and 64", o.Readers)
	}
	if o.FanoutShards < 0 || o.FanoutShards > 64 {
		return bad("fanout-shards", "%d: must be between 0 (sixteen per CPU) and 64", o.FanoutShards)
	}
	if o.Batch != "on" && o.Batch != "off" {
		return bad("batch", "%q: want on or off", o.Batch)
	}
	if err := sched.Check(o.Sched); err != nil {
		return bad("sched", "%v", err)
	}
	if err := checkAddr("listen", "udp", o.Listen); err != nil {
		return err
	}
	if o.MetricsListen != "" {
		if err := checkAddr("metrics-listen", "tcp", o.MetricsListen); err != nil {
			return err
		}
	}
	if _, err := o.floodSettings(); err != nil {
		return err
	}
	if _, err := wire.ParseLang(o.Lang); err != nil {
		return bad("lang", "%q: want en or zh", o.Lang)
	}
	if _, err := parseLevel(o.LogLevel); err != nil {
		return bad("log-level", "%q: want debug, info, warn or error", o.LogLevel)
	}
	return nil
}

// checkAddr checks that addr is HOST:PORT with a valid port, without
// resolving the host (that happens when the relay listens).
func checkAddr(key, network, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad(key, "%q: want HOST:PORT, e.g. :9999 or 127.0.0.1:9101", addr)
	}
	if _, err := net.LookupPort(network, port); err != nil {
		return bad(key, "%q: bad port %q", addr, port)
	}
	return nil
}

// floodSettings turns the --flood flags into relay settings.
func (o Options) floodSettings() (relay.FloodSettings, error) {
	fs := relay.DefaultFloodSettings()
	fs.Enabled = o.Flood == "on"
	fs.ChatRate, fs.ChatBurst = rate.Limit(o.ChatRate), o.ChatBurst
	fs.DatagramRate, fs.DatagramBurst = rate.Limit(o.DatagramRate), o.DatagramBurst
	fs.Exempt = []netip.Prefix{}
	for _, p := range strings.Split(o.LimitExempt, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return fs, bad("limit-exempt", "%q: not a prefix such as 10.0.0.0/8 or ::1/128", p)
		}
		fs.Exempt = append(fs.Exempt, pfx)
	}
	switch {
	case !(o.ChatRate > 0):
		return fs, bad("flood-chat-rate", "%v: must be positive", o.ChatRate)
	case o.ChatBurst < 1:
		return fs, bad("flood-chat-burst", "%d: must be at least 1", o.ChatBurst)
	case !(o.DatagramRate > 0):
		return fs, bad("flood-datagram-rate", "%v: must be positive", o.DatagramRate)
	case o.DatagramBurst < 1:
		return fs, bad("flood-datagram-burst", "%d: must be at least 1", o.DatagramBurst)
	}
	if err := fs.Validate(); err != nil {
		return fs, bad("flood", "settings: %v", err)
	}
	return fs, nil
}
