package relay

import (
	"sort"
	"sync"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// The cluster view (Config.Cluster): the sessions the other relays hold,
// kept from the store's watch, so that who and the room list show every
// member wherever it is, a direct message finds its recipient's relay, and
// a member whose relay died and who did not come back within the lease is
// seen to time out in its rooms, once, whichever relays see it expire.

// remoteSessions is the sessions other relays hold.
type remoteSessions struct {
	mu    sync.Mutex               // protects byKey; leaf
	byKey map[string]SessionRecord // name compare key -> session
}

// watchCluster starts watching the cluster's sessions and serving the
// direct messages other relays send to this one. It returns the stop.
func (s *Server) watchCluster() (stop func()) {
	c := s.cfg.Cluster
	if c == nil {
		return func() {}
	}
	var stops []func()
	if stopW, err := c.WatchSessions(s.sessionEvent); err != nil {
		s.log.Warn("cannot watch the cluster's sessions: who and room lists show this relay's members only", zap.Error(err))
	} else {
		stops = append(stops, stopW)
	}
	if stopD, err := c.ServeDMs(s.cfg.Node, s.remoteDM); err != nil {
		s.log.Warn("cannot serve direct messages from other relays", zap.Error(err))
	} else {
		stops = append(stops, stopD)
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// sessionEvent keeps the view of the other relays' sessions, and announces
// the timeout of one that expired (see Cluster.WatchSessions).
func (s *Server) sessionEvent(rec SessionRecord, gone, expired bool) {
	_, key, err := wire.CanonicalName(rec.Name)
	if err != nil {
		return
	}
	mine := rec.Node == s.cfg.Node
	s.remote.mu.Lock()
	if s.remote.byKey == nil {
		s.remote.byKey = make(map[string]SessionRecord)
	}
	if cur, ok := s.remote.byKey[key]; ok && (gone || mine) && cur.ID == rec.ID {
		delete(s.remote.byKey, key)
	} else if !gone && !mine {
		s.remote.byKey[key] = rec
	}
	s.remote.mu.Unlock()
	if expired {
		if m := s.reg.ByName(rec.Name); m != nil && m.ID == rec.ID {
			return // alive here: only its refresh failed
		}
		s.announceExpired(rec)
	}
}

// announceExpired appends a timeout event for rec's member to each of its
// rooms. Every relay that sees the session expire does so, under one
// message id per session and room, so the log stores it once.
func (s *Server) announceExpired(rec SessionRecord) {
	for _, name := range rec.Rooms {
		var log RoomLog
		var err error
		if r := s.rooms.get(roomKey(name)); r != nil {
			log = r.log // open here already: no request to open it again
		} else {
			log, err = s.cfg.Logs.Open(name)
		}
		if err != nil {
			s.log.Warn("cannot announce a member's timeout", zap.String("name", rec.Name), zap.String("room", name), zap.Error(err))
			continue
		}
		once, ok := log.(OnceAppender)
		if !ok {
			return
		}
		f := wire.Frame{T: wire.FrameTimeout, Room: name, From: rec.Name}
		if _, _, _, err := once.AppendOnce(f, "timeout/"+rec.ID+"/"+name); err != nil {
			s.log.Warn("cannot announce a member's timeout", zap.String("name", rec.Name), zap.String("room", name), zap.Error(err))
			continue
		}
		s.obs.Broadcast(KindTimeout)
	}
	s.log.Info("member of a relay that stopped timed out", zap.String("name", rec.Name), zap.String("node", rec.Node))
}

// remoteIn returns the names of the other relays' members in the room
// whose compare key is key, sorted.
func (s *Server) remoteIn(key string) []string {
	s.remote.mu.Lock()
	defer s.remote.mu.Unlock()
	var names []string
	for _, rec := range s.remote.byKey {
		for _, r := range rec.Rooms {
			if roomKey(r) == key {
				names = append(names, rec.Name)
				break
			}
		}
	}
	sort.Strings(names)
	return names
}

// remoteRooms counts the other relays' members per room name (by compare
// key: its display name as the first record has it).
func (s *Server) remoteRooms() map[string]RoomInfo {
	s.remote.mu.Lock()
	defer s.remote.mu.Unlock()
	out := map[string]RoomInfo{}
	for _, rec := range s.remote.byKey {
		for _, r := range rec.Rooms {
			k := roomKey(r)
			ri := out[k]
			if ri.Name == "" {
				ri.Name = r
			}
			ri.Members++
			out[k] = ri
		}
	}
	return out
}

// remoteMember returns the session another relay holds under name.
func (s *Server) remoteMember(name string) (SessionRecord, bool) {
	_, key, err := wire.CanonicalName(name)
	if err != nil {
		return SessionRecord{}, false
	}
	s.remote.mu.Lock()
	defer s.remote.mu.Unlock()
	rec, ok := s.remote.byKey[key]
	return rec, ok
}

// roomKey is a room name's compare key (main for main).
func roomKey(name string) string {
	if name == wire.RoomMain {
		return name
	}
	if _, key, err := wire.CanonicalRoom(name); err == nil {
		return key
	}
	return name
}

// remoteDM delivers a direct message another relay sent to one of this
// relay's members, as v2Msg delivers a local one, and answers with a wire
// code ("" when delivered).
func (s *Server) remoteDM(dm DirectMessage) string {
	to := s.reg.ByName(dm.To)
	if to == nil {
		return wire.CodeNoSuchMember
	}
	code := s.deliverDM(to, dm.From, dm.ID, dm.Text)
	s.out.Flush()
	return code
}
