//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CPU-time clock ids the kernel makes from a pid or tid
// (MAKE_PROCESS_CPUCLOCK and MAKE_THREAD_CPUCLOCK in linux/posix-timers.h):
// CPUCLOCK_SCHED counts the time on a CPU, user and system.
const (
	cpuclockSched     = 2
	cpuclockPerThread = 4
)

// processCPU returns the CPU seconds, user and system, that process pid has
// used so far, threads that have ended included. It reads the kernel's
// CPU-time clock, to the nanosecond: /proc's stat counts 10 ms ticks, which
// reads a short step's 6 ms as 0 (or as 10).
func processCPU(pid int) (float64, error) {
	return cpuClock(int32(^uint32(pid)<<3) | cpuclockSched)
}

// tidCPU returns the CPU seconds thread tid of this process has used so
// far, to the nanosecond.
func tidCPU(tid int) (float64, error) {
	return cpuClock(int32(^uint32(tid)<<3) | cpuclockSched | cpuclockPerThread)
}

// selfCPU returns the CPU seconds this process has used so far.
func selfCPU() (float64, error) {
	return cpuClock(unix.CLOCK_PROCESS_CPUTIME_ID)
}

// cpuClock reads the CPU-time clock id in seconds.
func cpuClock(id int32) (float64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, err
	}
	return float64(ts.Nano()) / 1e9, nil
}

// freeUDPPort picks a free loopback UDP port (bind :0, close).
func freeUDPPort() (netip.AddrPort, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// proc is a relay running as a child process.
type proc struct {
	cmd  *exec.Cmd
	addr netip.AddrPort
	done chan struct{}
	err  error

	onStop func() // after the process ended (a durable relay's data dir)
}

// freeTCPPort picks a free loopback TCP port (bind :0, close).
func freeTCPPort() (netip.AddrPort, error) {
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// startProc starts a relay and waits until ready says it serves addr.
func startProc(path string, args []string, addr netip.AddrPort, stderr *os.File,
	ready func(addr netip.AddrPort, limit time.Duration, exited <-chan struct{}) error) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	if err := ready(addr, 10*time.Second, p.done); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return p, nil
}

func (p *proc) cpu() (float64, error) {
	return processCPU(p.cmd.Process.Pid)
}

// exited reports whether the relay process has ended (p.err says how).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// gone says that the process has ended, and how, if it has.
func (p *proc) gone() error {
	if p.exited() {
		return fmt.Errorf("the relay exited (%v)", p.err)
	}
	return nil
}

// stop sends SIGTERM, waits up to 6 s, then SIGKILL.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(6 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if p.onStop != nil {
		p.onStop()
		p.onStop = nil
	}
}

// waitLogin logs in a probe member until the relay answers OK, then quits it.
func waitLogin(addr netip.AddrPort, limit time.Duration, exited <-chan struct{}) error {
	return waitLoginAs("probe", addr, limit, exited)
}

// waitLoginAs is waitLogin with a probe of that name: relays that share
// their names (--nats) must not see two probes of the same one, since a
// quit name may be held a moment after the probe has gone. The probe
// keeps one socket, sending its login again every 150 ms or so: a login
// slower than that (a relay storing names in NATS) answers the repeat from
// the same address with OK too, where a new socket would find the name
// taken by the first one, and leave that one in the room as a member
// nobody reads.
func waitLoginAs(probe string, addr netip.AddrPort, limit time.Duration, exited <-chan struct{}) error {
	m, err := openUDPMember(probe, 0, 0, addr)
	if err != nil {
		return err
	}
	defer unix.Close(m.fd)
	buf := make([]byte, 256)
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited before answering a login")
		default:
		}
		// Before the relay listens, a send draws ECONNREFUSED, on this
		// write or a later read: either is skipped.
		_, _ = unix.Write(m.fd, []byte("L "+probe))
		if ok, _ := waitReadable(m.fd, time.Now().Add(100*time.Millisecond)); ok {
			for range 64 {
				k, err := unix.Read(m.fd, buf)
				if errors.Is(err, unix.EAGAIN) {
					break
				}
				if err == nil && string(buf[:k]) == "OK" {
					_, _ = unix.Write(m.fd, []byte("Q "+probe))
					time.Sleep(20 * time.Millisecond)
					return nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("no answer to a login within " + limit.String())
}

// buildRelay builds ./cmd/relay of this module into dir.
func buildRelay(dir string) (string, error) {
	out := filepath.Join(dir, "relay")
	cmd := exec.Command("go", "build", "-o", out, "github.com/chatrelay/chatrelay/cmd/relay")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/relay: %w (run from the module, or pass --relay-bin)", err)
	}
	return out, nil
}
