package jetstream_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/jetstream"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// startCluster starts three JetStream nats-servers routed to each other on
// loopback, shut down when the test ends, and waits until JetStream places
// a stream with three replicas.
func startCluster(t *testing.T) []*server.Server {
	t.Helper()
	const n = 3
	routes := make([]string, n)
	ports := make([]int, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		routes[i] = "nats://" + ln.Addr().String()
		ln.Close()
	}
	servers := make([]*server.Server, n)
	for i := range n {
		servers[i] = runServer(t, &server.Options{
			ServerName: fmt.Sprintf("nats-%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		})
	}
	js := dial(t, servers[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateOrUpdateStream(ctx, natsjs.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: n, Storage: natsjs.MemoryStorage})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster does not place a stream with %d replicas: %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return servers
}

// dial connects to ns alone until the test ends.
func dial(t *testing.T, ns *server.Server) natsjs.JetStream {
	t.Helper()
	return jsOver(t, ns.ClientURL())
}

// consumersOn returns the consumers of stream that server i hosts.
func consumersOn(servers []*server.Server, i int, stream string) []string {
	jsz, err := servers[i].Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil {
		return nil
	}
	var names []string
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name != stream {
				continue
			}
			for _, c := range s.Consumer {
				if c.Cluster != nil && c.Cluster.Leader == servers[i].Name() {
					names = append(names, c.Name)
				}
			}
		}
	}
	return names
}

// A relay follows a room through its connection to one server, but the
// follower's consumer lives where JetStream placed it: when that other
// server dies, the follower moves to another within seconds (two missed
// heartbeats) and hands over what was appended meanwhile, once each, in
// order. With nats.go's default heartbeat (5 s) the room's members on
// this relay got nothing for 10 s.
func TestFollowOutlivesItsConsumersServer(t *testing.T) {
	servers := startCluster(t)
	// The relay is on server 1; the follower's consumer must be on
	// another, not the meta leader (whose death would add an election of
	// its own to the measure). Placement is JetStream's: a new room until
	// one lands there.
	logs, err := jetstream.NewLogs(dial(t, servers[0]), jetstream.LogOptions{History: 100, Replicas: 3, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	type follower interface {
		relay.RoomLog
		relay.RoomFollower
	}
	// handed is what one room's follower handed over.
	type handed struct {
		mu  sync.Mutex
		got []uint64
		at  map[uint64]time.Time
	}
	var (
		log  follower
		seen *handed
		host = -1
	)
	for try := 0; host < 0; try++ {
		if try == 20 {
			t.Fatal("JetStream never placed a follower's consumer on another server than the relay's")
		}
		room := "room" + strconv.Itoa(try)
		l, err := logs.Open(room)
		if err != nil {
			t.Fatal(err)
		}
		log, seen = l.(follower), &handed{at: map[uint64]time.Time{}}
		h := seen
		stop, err := log.Follow(0, func(seq uint64, _ []byte, _ uint64) {
			h.mu.Lock()
			h.got = append(h.got, seq)
			h.at[seq] = time.Now()
			h.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		for i := range 3 {
			if _, _, err := log.Append(wire.Frame{T: wire.FrameChat, From: "alice", Text: fmt.Sprintf("before %d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		stream, _ := logs.StreamName(room)
		for i := 1; i < len(servers); i++ {
			if len(consumersOn(servers, i, stream)) == 1 && !servers[i].JetStreamIsLeader() {
				host = i
			}
		}
	}

	killed := time.Now()
	servers[host].Shutdown()
	servers[host].WaitForShutdown()
	var seq uint64
	for seq == 0 {
		if s, _, err := log.Append(wire.Frame{T: wire.FrameChat, From: "alice", Text: "after"}); err == nil {
			seq = s
		} else if time.Since(killed) > 20*time.Second {
			t.Fatalf("no append for 20 s after a server died: %v", err)
		}
	}
	stored := time.Since(killed)
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen.mu.Lock()
		when, ok := seen.at[seq]
		seen.mu.Unlock()
		if ok {
			took := when.Sub(killed)
			t.Logf("server %d (the follower's consumer) died: event %d stored after %v, handed over after %v", host+1, seq, stored.Round(time.Millisecond), took.Round(time.Millisecond))
			if took > 7*time.Second {
				t.Errorf("the follower handed the event over %v after its consumer's server died; want within 7 s", took.Round(time.Millisecond))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower never handed over event %d after its consumer's server died", seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	for i, s := range seen.got {
		if s != uint64(i+1) {
			t.Fatalf("handed over %v: want each seq once, in order", seen.got)
		}
	}
}
