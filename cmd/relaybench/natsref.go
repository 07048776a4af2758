//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startNATS starts an embedded nats-server (no logs, no signal handlers)
// on 127.0.0.1:port (0: a random port) and waits until it accepts
// connections: core pub/sub only when storeDir is "" (the nats reference),
// else with JetStream storing in storeDir (the server that relays started
// with --nats share in nodes2). Slow-consumer limits are raised so that
// the broker, not a 64 MiB default, decides how much it buffers for a
// member; server PINGs are rare (once an hour) so that a step never
// carries them.
func startNATS(port int, storeDir string) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		Host:          "127.0.0.1",
		Port:          port,
		NoLog:         true,
		NoSigs:        true,
		MaxConn:       100_000,
		MaxPending:    1 << 30,
		MaxPayload:    1 << 20,
		WriteDeadline: 30 * time.Second,
		PingInterval:  time.Hour,
		MaxPingsOut:   10,
		JetStream:     storeDir != "",
		StoreDir:      storeDir,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats-server: not ready within 10s")
	}
	return s, nil
}

// natsAddr is where s listens.
func natsAddr(s *server.Server) (netip.AddrPort, error) {
	ta, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, errors.New("nats-server: no TCP address")
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func stopNATS(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// waitNATS dials addr until the server's INFO line arrives.
func waitNATS(addr netip.AddrPort, limit time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited before accepting a connection")
		default:
		}
		c, err := net.DialTimeout("tcp4", addr.String(), 200*time.Millisecond)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 4096)
			n, _ := c.Read(buf)
			c.Close()
			if bytes.HasPrefix(buf[:n], []byte("INFO ")) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no NATS INFO within %v", limit)
}

// natsPort parses the port of a 127.0.0.1:PORT listen address.
func natsPort(listen string) (int, error) {
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return 0, fmt.Errorf("bad port %q", p)
	}
	return port, nil
}
