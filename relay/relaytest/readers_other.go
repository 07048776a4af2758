//go:build !linux

package relaytest

// DefaultReaders is how many sockets Start's relay reads with: one where
// SO_REUSEPORT groups are not supported.
const DefaultReaders = 1
