package main

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/chatrelay/chatrelay/relay/sched"
)

// The daemon runs every thread in SCHED_BATCH by default, including the
// threads it starts once it serves (the reader, the senders), and in the
// system's policy with --sched normal.
func TestDaemonThreadsRunInTheSchedPolicy(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want uint32
	}{
		{nil, unix.SCHED_BATCH},
		{[]string{"--sched", "normal"}, unix.SCHED_NORMAL},
	} {
		cmd, _ := startRelayProc(t, "sched"+strconv.Itoa(int(tc.want)), tc.args...)
		got, err := sched.Policies(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < 3 {
			t.Fatalf("relay %v: %d threads, want the runtime's, the reader's and the senders'", tc.args, len(got))
		}
		for tid, p := range got {
			if p != tc.want {
				t.Errorf("relay %v: thread %d has policy %d, want %d", tc.args, tid, p, tc.want)
			}
		}
	}
}
