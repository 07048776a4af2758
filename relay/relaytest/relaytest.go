// Package relaytest starts a real relay on loopback for tests: a UDP socket
// on 127.0.0.1:0, the admin socket in a private temporary directory, and a
// cleanup that shuts it down.
package relaytest

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/internal/adminsock"
)

// Relay is a running relay.
type Relay struct {
	Addr        netip.AddrPort // the UDP address members send to
	AdminSocket string         // the admin socket's path
	Server      *relay.Server
}

// Start starts a relay with English wording and the defaults of
// relay.Config (except flood control, off), changed by opts, and stops it
// when the test ends. It reads with DefaultReaders sockets, so every test
// runs with the daemon's batch I/O and, on Linux, an SO_REUSEPORT group.
func Start(t testing.TB, opts ...func(*relay.Config)) *Relay {
	t.Helper()
	return StartOn(t, "127.0.0.1:0", opts...)
}

// StartReaders is Start with readers sockets in an SO_REUSEPORT group
// (1: a single socket).
func StartReaders(t testing.TB, readers int, opts ...func(*relay.Config)) *Relay {
	t.Helper()
	return start(t, "127.0.0.1:0", readers, 4<<20, opts)
}

// StartOn is Start on a chosen UDP address (e.g. "0.0.0.0:0" for a
// wildcard); Addr is then reported on 127.0.0.1 when the address is a
// wildcard.
func StartOn(t testing.TB, listen string, opts ...func(*relay.Config)) *Relay {
	t.Helper()
	return start(t, listen, DefaultReaders, 4<<20, opts)
}

// StartSmallBuffer is Start with the relay socket's receive buffer set to
// readBuffer bytes instead of the daemon's 4 MiB, so that a burst overflows
// it in the kernel.
func StartSmallBuffer(t testing.TB, readBuffer int, opts ...func(*relay.Config)) *Relay {
	t.Helper()
	return start(t, "127.0.0.1:0", 1, readBuffer, opts)
}

// StartConn is Start on a socket the test made, e.g. inside a network
// namespace (see Netns.Do). The relay owns uc from now on.
func StartConn(t testing.TB, uc *net.UDPConn, opts ...func(*relay.Config)) *Relay {
	t.Helper()
	_ = uc.SetReadBuffer(4 << 20)
	_ = uc.SetWriteBuffer(4 << 20)
	return startOn(t, []*net.UDPConn{uc}, opts)
}

func start(t testing.TB, listen string, readers, readBuffer int, opts []func(*relay.Config)) *Relay {
	t.Helper()
	ucs, err := relay.Listen(listen, readers, 4<<20)
	if err != nil {
		t.Fatalf("relaytest: listen: %v", err)
	}
	// As the daemon does (4 MiB): bursts become latency, not kernel drops.
	for _, uc := range ucs {
		_ = uc.SetReadBuffer(readBuffer)
	}
	return startOn(t, ucs, opts)
}

func startOn(t testing.TB, ucs []*net.UDPConn, opts []func(*relay.Config)) *Relay {
	t.Helper()
	// Flood control is off unless a test turns it on: tests, like load
	// tools, send faster than people type.
	cfg := relay.Config{Flood: relay.FloodOff()}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := relay.New(cfg)
	if err != nil {
		closeAll(ucs)
		t.Fatalf("relaytest: %v", err)
	}
	// A short directory: Unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "relaytest")
	if err != nil {
		t.Fatalf("relaytest: %v", err)
	}
	sock := filepath.Join(dir, "admin.sock")
	ln, err := adminsock.Listen(sock)
	if err != nil {
		t.Fatalf("relaytest: admin socket: %v", err)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.ServeGroup(ucs); err != nil {
			t.Errorf("relaytest: Serve: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.ServeAdmin(ln); err != nil {
			t.Errorf("relaytest: ServeAdmin: %v", err)
		}
	}()
	<-srv.Ready()

	addr := ucs[0].LocalAddr().(*net.UDPAddr).AddrPort()
	if addr.Addr().IsUnspecified() {
		addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addr.Port())
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("relaytest: Shutdown: %v", err)
		}
		ln.Close()
		closeAll(ucs)
		wg.Wait()
		os.RemoveAll(dir)
	})
	return &Relay{Addr: addr, AdminSocket: sock, Server: srv}
}

func closeAll(ucs []*net.UDPConn) {
	for _, uc := range ucs {
		uc.Close()
	}
}
