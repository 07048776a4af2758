package seamtest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/seamtest"
)

func TestMain(m *testing.M) {
	// ants (imported by relay's dependencies) may start goroutines at
	// init: IgnoreCurrent skips exactly those.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// The in-memory implementations state the contract.
func TestMemoryLogs(t *testing.T) {
	seamtest.RoomLogs(t, func(t *testing.T, history int) relay.RoomLogs { return relay.NewMemoryLogs(history) })
}

func TestMemoryDirectory(t *testing.T) {
	seamtest.NameDirectory(t, func(t *testing.T) relay.NameDirectory { return relay.NewMemoryDirectory() })
}

func TestMemoryOperatorStore(t *testing.T) {
	seamtest.OperatorStore(t, func(t *testing.T) (a, b relay.OperatorStore) {
		s := relay.NewMemoryOperatorStore()
		return s, s
	})
}
