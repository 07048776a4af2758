//go:build linux

package relaytest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireNetnsEnv names the environment variable that turns LossyNetns's
// skips into failures. CI sets CHATRELAY_REQUIRE_NETNS=1 so that a missing
// nftables or privilege cannot silently skip the real-loss tests.
const RequireNetnsEnv = "CHATRELAY_REQUIRE_NETNS"

// Netns is a network namespace that a test created. Sockets opened inside
// Do belong to it.
type Netns struct {
	Name string // as `ip netns` knows it: ip netns exec NAME ...
	path string // /run/netns/NAME
}

// LossyNetns creates a network namespace for the test, brings its loopback
// up, and installs an nftables table that drops lossPercent% of all UDP
// datagrams at random (numgen random) on input, whatever their port or
// direction: on loopback every datagram, request or reply, passes the input
// hook exactly once, so each one is lost with that probability. The
// namespace is deleted when the test ends.
//
// It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 and, unless
// lossPercent is 0, nftables (apt-get install nftables); without them it
// calls t.Skip saying what is missing, or t.Fatal if RequireNetnsEnv is
// set. The host's own network is not touched.
func LossyNetns(t testing.TB, lossPercent int) *Netns {
	t.Helper()
	if lossPercent < 0 || lossPercent > 100 {
		t.Fatalf("relaytest: loss %d%% out of range 0..100", lossPercent)
	}
	skip := func(format string, args ...any) {
		t.Helper()
		msg := "relaytest: no lossy network namespace: " + fmt.Sprintf(format, args...)
		if os.Getenv(RequireNetnsEnv) != "" {
			t.Fatalf("%s (%s is set)", msg, RequireNetnsEnv)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("the ip command is missing (apt-get install iproute2)")
	}
	if _, err := exec.LookPath("nft"); err != nil && lossPercent > 0 {
		skip("the nft command is missing (apt-get install nftables)")
	}

	var r [4]byte
	_, _ = rand.Read(r[:])
	n := &Netns{Name: fmt.Sprintf("chatrelay-%d-%s", os.Getpid(), hex.EncodeToString(r[:]))}
	n.path = "/run/netns/" + n.Name
	if out, err := ipCmd(nil, "netns", "add", n.Name); err != nil {
		if permissionDenied(out, err) {
			skip("cannot create a network namespace (needs root or CAP_SYS_ADMIN; in a container, --privileged or --cap-add SYS_ADMIN): ip netns add: %s", out)
		}
		t.Fatalf("relaytest: ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := ipCmd(nil, "netns", "del", n.Name); err != nil {
			t.Errorf("relaytest: ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	if out, err := ipCmd(nil, "-n", n.Name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("relaytest: bring lo up in %s: %v: %s", n.Name, err, out)
	}
	if lossPercent == 0 {
		return n
	}
	ruleset := fmt.Sprintf(`table inet chatrelay_lossy {
	chain input {
		type filter hook input priority 0; policy accept;
		meta l4proto udp numgen random mod 100 < %d counter drop
	}
}
`, lossPercent)
	if out, err := ipCmd([]byte(ruleset), "netns", "exec", n.Name, "nft", "-f", "-"); err != nil {
		if permissionDenied(out, err) {
			skip("cannot install nftables rules (needs CAP_NET_ADMIN): %s", out)
		}
		t.Fatalf("relaytest: nft in %s: %v: %s", n.Name, err, out)
	}
	return n
}

// Dropped returns how many datagrams the namespace's loss rule has dropped
// so far (its nftables counter), for diagnostics.
func (n *Netns) Dropped() (int, error) {
	out, err := ipCmd(nil, "netns", "exec", n.Name, "nft", "list", "chain", "inet", "chatrelay_lossy", "input")
	if err != nil {
		return 0, fmt.Errorf("relaytest: nft list: %v: %s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "counter packets ")
	if !ok {
		return 0, errors.New("relaytest: no counter in the loss rule")
	}
	var packets int
	if _, err := fmt.Sscan(rest, &packets); err != nil {
		return 0, fmt.Errorf("relaytest: parse counter: %w", err)
	}
	return packets, nil
}

// Do runs fn on a goroutine whose OS thread has been switched into the
// namespace, and waits for it. Sockets fn creates belong to the namespace
// and keep working from any goroutine afterwards; anything else fn starts
// (goroutines, other threads) does not run in the namespace. A panic in fn
// is re-raised in the caller, and a runtime.Goexit (t.FailNow) in fn ends
// the caller too.
//
// The thread is switched back before it is released to other goroutines;
// if switching back fails, Do returns the error and the thread stays
// locked, so that it exits with the goroutine instead of carrying the
// namespace into unrelated code.
func (n *Netns) Do(fn func()) error {
	type result struct {
		err      error
		panicked any
		goexit   bool
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		res := result{goexit: true}
		defer func() { done <- res }()

		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			res = result{err: fmt.Errorf("relaytest: open the thread's namespace: %w", err)}
			return
		}
		defer orig.Close()
		target, err := os.Open(n.path)
		if err != nil {
			runtime.UnlockOSThread()
			res = result{err: fmt.Errorf("relaytest: open namespace %s: %w", n.Name, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res = result{err: fmt.Errorf("relaytest: enter namespace %s: %w", n.Name, err)}
			return
		}
		defer func() {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				// Stay locked: the thread dies with this goroutine.
				res.err = fmt.Errorf("relaytest: leave namespace %s: %w", n.Name, err)
				return
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if v := recover(); v != nil {
				res.panicked, res.goexit = v, false
			}
		}()
		fn()
		res.goexit = false
	}()
	res := <-done
	switch {
	case res.panicked != nil:
		panic(res.panicked)
	case res.goexit:
		runtime.Goexit()
	}
	return res.err
}

// ipCmd runs ip with args, stdin as its input, and returns its combined
// output.
func ipCmd(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return bytes.TrimSpace(out), err
}

// permissionDenied tells a lack of privilege from other failures of ip or
// nft, which report it only in their output.
func permissionDenied(out []byte, err error) bool {
	if errors.Is(err, os.ErrPermission) {
		return true
	}
	s := strings.ToLower(string(out))
	return strings.Contains(s, "operation not permitted") || strings.Contains(s, "permission denied")
}
