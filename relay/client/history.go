package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// History: a page of a room's older events, on request (revision 1). The
// client sends history {room, before, limit} and gathers the answer, the
// events marked history and a closing history_end, which names the
// request by room and before. The request is idempotent: it is sent again
// with backoff until a whole answer is in (history_end came, with every
// event it counts), so a lost datagram of the answer costs a retransmission,
// never a hole. The events do not go to Events: a page is the answer to a
// call, and they are history, never live events or gaps.

// History is one page of a room's older events: the answer to FetchHistory.
type History struct {
	Room  string // the room as the relay names it; wire.Inbox for the inbox
	Epoch string // the room's epoch: the seqs are this epoch's
	// Events are the page, oldest first: room events (dm events for the
	// inbox) with their Seq, History set, and Self for our own.
	Events []Event
	// More reports that the relay still holds older events: the next page
	// is FetchHistory(room, Events[0].Seq, ...).
	More bool
	// Lost, when not 0, is the seq up to which the room's events are lost
	// for good (the relay's log no longer keeps them). Without More and
	// Lost, the page reaches the room's first event.
	Lost uint64
}

// ErrNewEpoch reports a FetchHistory whose room started a new sequence
// (the relay restarted, or the inbox is a new session's) before the answer
// came: the seq it asked before means nothing any more.
var ErrNewEpoch = errors.New("client: the room's sequence restarted (new epoch): its earlier history is gone")

// Retransmission of a history request: as a chat's, 250 ms doubling to 2 s,
// given up after maxHistoryTries (about 25 s).
const (
	historyFirstWait = 250 * time.Millisecond
	historyMaxWait   = 2 * time.Second
	maxHistoryTries  = 14
)

// FetchHistory asks the relay for up to limit events of room before seq
// before (0: the newest), and waits for the whole page, or ctx, or the end
// of the session. room is a room we are in (not still joining) or
// wire.Inbox for our direct messages. limit 0 is the relay's default (50);
// more than wire.MaxHistoryLimit (200) asks for that many.
//
// It fails with ErrUnsupported when the relay speaks revision 0,
// ErrNotInRoom (also when we leave the room meanwhile, or the relay says
// we are not in it, which ends the room as EventParted reports),
// ErrNewEpoch, an error wrapping ErrNoAnswer when the relay never answers
// (one from before history drops the request), ctx's error, or ErrClosed. Concurrent calls for the same room and before share one
// request.
func (c *Client) FetchHistory(ctx context.Context, room string, before uint64, limit int) (History, error) {
	key := wire.Inbox
	if room != wire.Inbox {
		k, err := roomKeyOf(room)
		if err != nil {
			return History{}, err
		}
		key = k
	}
	r := c.await(ctx, command{kind: cmdHistory, room: room, key: key, before: before, limit: limit})
	return r.hist, r.err
}

// histKey names a history request: its answer echoes room and before.
type histKey struct {
	room   string // the room's compare key; wire.Inbox for the inbox
	before uint64
}

// histReq is a history request waiting for its whole answer.
type histReq struct {
	r       *room  // the stream asked about
	epoch   string // its epoch when asked: a new one voids the request
	limit   uint64
	got     map[uint64]Event // the answer's events gathered so far, by seq
	waiters []chan cmdReply
	retry
}

// onHistory starts (or joins) a history request (a cmdHistory).
func (c *Client) onHistory(cmd command) {
	if c.st == stEnded {
		cmd.reply <- cmdReply{err: ErrClosed}
		return
	}
	if c.rev < 1 {
		cmd.reply <- cmdReply{err: ErrUnsupported}
		return
	}
	r := c.byKey[cmd.key]
	if cmd.key == wire.Inbox {
		r = c.inbox
	}
	if r == nil || r.joining {
		cmd.reply <- cmdReply{err: ErrNotInRoom}
		return
	}
	k := histKey{room: cmd.key, before: cmd.before}
	if c.histories == nil {
		c.histories = make(map[histKey]*histReq)
	}
	h := c.histories[k]
	if h == nil {
		h = &histReq{r: r, epoch: r.epoch, limit: uint64(min(max(cmd.limit, 0), wire.MaxHistoryLimit)), got: make(map[uint64]Event)}
		h.retry.start()
		h.bo = backoff{first: historyFirstWait, max: historyMaxWait}
		c.histories[k] = h
	}
	h.waiters = append(h.waiters, cmd.reply)
}

// answer hands the outcome to every waiter.
func (h *histReq) answer(r cmdReply) {
	for _, w := range h.waiters {
		w <- r
	}
	h.waiters = nil
}

// historyEvent takes an event frame marked history that answers a pending
// request for r (its seq is below the request's before), and reports
// whether one took it; if none did, it goes the way of any event (a
// backlog). The frame's epoch must be r's.
func (c *Client) historyEvent(r *room, f *wire.Frame) bool {
	if len(c.histories) == 0 || f.Epoch == "" || f.Epoch != r.epoch {
		return false
	}
	took := false
	for k, h := range c.histories {
		if h.r != r || h.epoch != f.Epoch || (k.before != 0 && f.Seq >= k.before) {
			continue
		}
		if _, dup := h.got[f.Seq]; !dup {
			e := roomEvent(f, true)
			e.Room = r.name
			if (e.Type == EventChat || e.Type == EventDM) && e.From == c.name {
				e.Self = true
			}
			h.got[f.Seq] = e
		}
		took = true
	}
	return took
}

// onHistoryEnd closes the answer to a request: with every event it counts
// gathered, the page goes to the waiters; with some missing (lost on the
// way), the request is sent again at once and the next answer fills the
// holes.
func (c *Client) onHistoryEnd(f *wire.Frame) {
	k := histKey{room: c.roomKey(f.Room), before: f.Before}
	if f.Room == wire.Inbox {
		k.room = wire.Inbox
	}
	h := c.histories[k]
	if h == nil || f.Epoch != h.epoch {
		return // late, a duplicate, or another epoch's
	}
	var evs []Event
	if f.Count > 0 {
		for seq, e := range h.got {
			if seq >= f.FromSeq && seq <= f.ToSeq {
				evs = append(evs, e)
			}
		}
	}
	if uint64(len(evs)) < f.Count {
		// Part of the answer was lost (or is late): the relay answers, so
		// ask again now, at the first wait again.
		h.next = time.Time{}
		h.bo.reset()
		return
	}
	slices.SortFunc(evs, func(a, b Event) int { return cmpSeq(a.Seq, b.Seq) })
	delete(c.histories, k)
	h.answer(cmdReply{hist: History{Room: h.r.name, Epoch: f.Epoch, Events: evs, More: f.More, Lost: f.Lost}})
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// historyFrames appends the history requests due at now, and ends those
// that can no longer be answered: their room gone or in a new epoch, or
// never answered.
func (c *Client) historyFrames(now time.Time, frames []*wire.Frame) []*wire.Frame {
	for k, h := range c.histories {
		cur := c.byKey[k.room]
		if k.room == wire.Inbox {
			cur = c.inbox
		}
		switch {
		case cur != h.r || (!h.r.joining && h.r.epoch != h.epoch):
			c.endHistory(k, ErrNewEpoch)
			continue
		case h.r.joining || !h.due(now, c.cfg.Rand):
			continue // a room joining again keeps its request waiting
		case h.tries > maxHistoryTries:
			c.endHistory(k, fmt.Errorf("client: history of %s: %w", h.r.name, ErrNoAnswer))
			continue
		}
		frames = append(frames, &wire.Frame{T: wire.FrameHistory, Room: h.r.name, Before: k.before, Limit: h.limit})
	}
	return frames
}

// historyWake is when historyFrames next has something to do.
func (c *Client) historyWake(earlier func(time.Time)) {
	for _, h := range c.histories {
		if !h.r.joining {
			earlier(h.next)
		}
	}
}

// endHistory ends a request with err.
func (c *Client) endHistory(k histKey, err error) {
	if h := c.histories[k]; h != nil {
		delete(c.histories, k)
		h.answer(cmdReply{err: err})
	}
}

// dropHistories ends the requests for r, which we are no longer in (we
// left it, or the relay says we are not in it), with ErrNotInRoom.
func (c *Client) dropHistories(r *room) {
	for k, h := range c.histories {
		if h.r == r {
			c.endHistory(k, ErrNotInRoom)
		}
	}
}

// failHistories ends every request with err (the session is over).
func (c *Client) failHistories(err error) {
	for k := range c.histories {
		c.endHistory(k, err)
	}
}
