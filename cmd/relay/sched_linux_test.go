package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// threadPolicies returns the scheduling policy of each thread of process
// pid as ps and chrt see it (/proc/<pid>/task/<tid>/stat, field 41):
// 0 SCHED_OTHER, 3 SCHED_BATCH.
func threadPolicies(t *testing.T, pid int) map[string]int {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range tasks {
		b, err := os.ReadFile(dir + e.Name() + "/stat")
		if err != nil {
			continue // the thread ended meanwhile
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // field 3 onwards
		p, err := strconv.Atoi(fields[41-3])
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = p
	}
	return got
}

// The daemon runs every thread in SCHED_BATCH by default, including the
// threads it starts once it serves (the reader, the senders), and in the
// system's policy with --sched normal.
func TestDaemonThreadsRunInTheSchedPolicy(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 3},                           // SCHED_BATCH
		{[]string{"--sched", "normal"}, 0}, // SCHED_OTHER
	} {
		cmd, _ := startRelayProc(t, "sched"+strconv.Itoa(tc.want), tc.args...)
		got := threadPolicies(t, cmd.Process.Pid)
		if len(got) < 3 {
			t.Fatalf("relay %v: %d threads, want the runtime's, the reader's and the senders'", tc.args, len(got))
		}
		for tid, p := range got {
			if p != tc.want {
				t.Errorf("relay %v: thread %s has policy %d, want %d", tc.args, tid, p, tc.want)
			}
		}
	}
}
