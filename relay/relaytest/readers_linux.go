package relaytest

// DefaultReaders is how many sockets Start's relay reads with: an
// SO_REUSEPORT group of two, so that every test runs the daemon's
// multi-reader path too.
const DefaultReaders = 2
