package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// ants starts its default pool when imported: IgnoreCurrent skips
		// exactly the goroutines alive before the tests, so a pool a test
		// forgot to close is still caught (naming ants' functions would
		// hide it).
		goleak.IgnoreCurrent(),
	)
}
