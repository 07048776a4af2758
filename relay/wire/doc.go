// Package wire is chatrelay's protocol, and only that: the classic text
// requests and replies (L, C, Q; OK, EXIT), the v2 frame and its codec,
// names and their compare keys, the wording of room events, and the errors
// a malformed datagram yields. It knows nothing of sockets, sessions or
// rooms, so the relay, the client engine, chatcli and the load tool share
// one definition of the bytes on the wire (docs/PROTOCOL.md), and a client
// binary pulls in none of the server.
//
// Decoding never trusts its input: every parser here is fuzzed
// (Fuzz* in the tests) and returns an error rather than panicking.
package wire
