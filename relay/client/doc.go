// Package client is a client of the relay's extended protocol, v2 (see
// docs/PROTOCOL.md, second half): address validation with a padded hello
// and a cookie, sessions that resume with their token after an address
// change, gap-free ordered delivery with repair, acknowledged sends with
// retransmission, heartbeats, and re-login after a relay restart.
//
// A Client is one session. Dial logs in; Send queues a chat message, which
// is retransmitted with backoff until the relay echoes it (or acks a
// duplicate); Events delivers what happens in the room in room order, each
// seq exactly once, together with the client's own state changes; Close
// quits.
//
// # Rooms and direct messages (revision 1)
//
// The hello says the client speaks revision 4 (wire.Rev); the welcome says
// what the relay speaks (Rev). With revision 1 or later the session is in main and
// may Join and Part other rooms, SendTo a room, Msg a member, list the
// relay's Rooms and ask WhoIn a room; with a revision-0 relay those calls
// fail with ErrUnsupported and the session stays in main. Each room, and
// the session's inbox "@" where direct messages arrive, is a sequence of
// its own: its own seq and epoch, repair, heartbeat ping and resume. Every
// event names its Room. Message ids are one sequence per session, shared by
// chats and direct messages. After a relay restart or a forgotten session
// the client logs in again and joins its rooms again by itself.
//
// # Compact datagrams (revision 2)
//
// A relay of revision 2 packs a room's events into datagrams that state
// their room, epoch and first seq once, in a context line (wire.FrameCtx).
// The client reads every datagram through wire.DecodeV2Wide (which reads
// datagrams of up to wire.MaxLinesWide lines, revision 4), which gives
// each event its fields back before anything else sees it, so repair,
// dedupe and Events work on whole frames as with revision 1. A relay of
// revision 0 or 1 never sends a context line, and its datagrams read as
// before.
//
// # Chat rows (revision 3)
//
// A relay of revision 3 writes the chats of a packed datagram as rows,
// ["from","text"], and keeps a chat's id only in its sender's copy: the
// echo by which this client acknowledges its own chats (the id is there)
// works as before, and a chat from someone else has ID 0.
//
// # Wide datagrams (revision 4)
//
// A relay of revision 4 packs up to wire.MaxLinesWide lines into a
// datagram to this client (up to wire.MaxFramesPerDatagram below it), and
// still reads no more than wire.MaxFramesPerDatagram from it: the client
// packs what it sends as before.
//
// # Several relays: failover
//
// Config.Addr and Config.Addrs may name several relays, the nodes of a
// cluster. Dial logs in at the first that answers, in order: an address
// where nothing listens (ICMP port unreachable) is left at once, a silent
// one after Config.HelloSilence hellos. Once logged in, when the relay in
// use has sent nothing for Config.DeadAfter, the client moves to the next
// address, round robin, emits EventFailover (PrevAddr, Addr) and resumes
// the session there with its token and each room's last seq, so the relay
// repairs what was missed and nothing is lost. A relay there that does not
// know the session refuses the resume (unknown_session): the client logs
// in again, joins its rooms again, and says so once with EventNewSession
// or EventRestarted carrying that relay's Addr. An address that does not
// answer the resume or the login (silent for Config.HelloSilence tries, or
// unreachable) is left for the next one the same way; once every address
// was tried since the last welcome, the next round waits 1 s, doubling to
// 10 s. The client never gives up after login: as with a single relay, it
// keeps trying until Close. With a single address nothing of this happens:
// the client resumes, or logs in again, at that address.
//
// FetchHistory asks for a page of a room's (or the inbox's) older events,
// as far back as the relay keeps them, and returns it whole: the request
// is retransmitted until every event of the answer is in. Those events are
// the call's answer, never part of Events.
//
// # Goroutines and ownership
//
// A Client runs one loop goroutine that owns all protocol state (the
// rooms and their sequencers, the outbox, timers and the socket), and one
// reader goroutine per socket that hands datagrams to the loop. The API
// methods talk to the loop through channels, so no protocol state is
// locked. Events are queued inside the loop without bound and handed to the
// Events channel as the consumer reads: the loop never blocks on a slow
// consumer, so memory grows with what the relay sends while nobody reads.
// Close ends every goroutine.
package client
