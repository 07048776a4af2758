package relay

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// The moderation verbs of the admin socket (see the table in admin.go).
// Each action is logged once at info with its fields and counted by
// Observer.Moderation; the answer lines are in the relay's language. Each
// change goes through the operator's state (Server.opChange): stored, then
// in force; a store that fails leaves it in force on this relay and the
// answer is the error (ErrNotStored), after the usual lines.

// forFlag reads --for: the duration and the deadline from now, or zero
// for none.
func (r *adminReq) forFlag(now time.Time) (time.Duration, time.Time, error) {
	v, ok := r.flags["for"]
	if !ok {
		return 0, time.Time{}, nil
	}
	d, err := parseModDuration(v)
	if err != nil {
		return 0, time.Time{}, err
	}
	return d, now.Add(d), nil
}

// muteTarget reads NAME [--room ROOM]: the name's and the room's display
// forms and compare keys (room "" for relay-wide).
func (r *adminReq) muteTarget() (e muteEntry, err error) {
	if e.name, e.nameKey, err = wire.CanonicalName(r.args[0]); err != nil {
		return e, fmt.Errorf("invalid name %q", wire.TruncateUTF8(r.args[0], 64))
	}
	if v, ok := r.flags["room"]; ok {
		if e.room, e.roomKey, err = wire.CanonicalRoom(v); err != nil {
			return e, fmt.Errorf("invalid room %q", wire.TruncateUTF8(v, 64))
		}
	}
	return e, nil
}

// ban NAME|IP|CIDR [--for DURATION] [REASON...]
func (s *Server) adminBan(r *adminReq) error {
	b, err := parseBanTarget(r.args[0])
	if err != nil {
		return err
	}
	if err := wire.CheckText(r.text); err != nil {
		return err
	}
	now := s.cfg.Now()
	d, expires, err := r.forFlag(now)
	if err != nil {
		return err
	}
	b.reason, b.by, b.expires, b.set = r.text, r.by, expires, now
	k := banKey(b)
	applied, after, serr := s.opChange(k, func() (uint64, error) {
		return s.ops.put(k, expires, banValue{Target: b.target, Reason: b.reason, By: b.by, Set: b.set})
	}, func() { s.mod().ban(b) })
	defer after()
	removed := 0
	if applied {
		removed = s.removeBanned(b)
	}
	s.obs.Moderation(ModBan)
	s.log.Info("admin ban", zap.String("target", b.target), zap.String("kind", b.kind), zap.Duration("for", d),
		zap.String("reason", b.reason), zap.String("by", b.by), zap.Int("removed", removed))
	w := s.modWords()
	line := fmt.Sprintf(w.didBan, b.target)
	if d > 0 {
		line += fmt.Sprintf(w.forPart, w.duration(d))
	}
	if b.reason != "" {
		line += fmt.Sprintf(w.whyPart, b.reason)
	}
	fmt.Fprintln(r.w, line)
	fmt.Fprintf(r.w, w.removed+"\n", removed)
	return serr
}

// removeBanned kicks the members b refuses: the one holding the name, or
// every member on a banned address. It returns how many it removed.
func (s *Server) removeBanned(b banEntry) int {
	why := s.modWords().removedReason(b.reason)
	if b.kind == BanName {
		if _, err := s.Kick(b.target, why); err != nil {
			return 0
		}
		return 1
	}
	n := 0
	for _, m := range s.reg.Members() {
		// Kick looks the member up by name again: one that left in
		// between is skipped (ErrNoMember).
		if b.prefix.Contains(m.Addr().Addr().Unmap()) {
			if _, err := s.Kick(m.Name, why); err == nil {
				n++
			}
		}
	}
	return n
}

// unban NAME|IP|CIDR
func (s *Server) adminUnban(r *adminReq) error {
	t, err := parseBanTarget(r.args[0])
	if err != nil {
		return err
	}
	b, ok := s.mod().findBan(t)
	if !ok {
		return ErrNoBan
	}
	k := banKey(t)
	_, after, serr := s.opChange(k, func() (uint64, error) { return s.ops.del(k) }, func() { s.mod().unban(t) })
	defer after()
	s.obs.Moderation(ModUnban)
	s.log.Info("admin unban", zap.String("target", b.target), zap.String("kind", b.kind), zap.String("by", r.by))
	fmt.Fprintf(r.w, s.modWords().didUnban+"\n", b.target)
	return serr
}

// banRow is one ban in `bans`.
type banRow struct {
	Target      string `json:"target"`
	Kind        string `json:"kind"`
	Reason      string `json:"reason"`
	By          string `json:"by"`
	Set         string `json:"set"`               // RFC 3339
	Expires     string `json:"expires,omitempty"` // RFC 3339; absent: never
	LeftSeconds int64  `json:"left_seconds,omitempty"`
	left        string // worded
}

// bans [--json]
func (s *Server) adminBans(r *adminReq) error {
	now := s.cfg.Now()
	var rows []banRow
	for _, b := range s.mod().bans() {
		row := banRow{Target: b.target, Kind: b.kind, Reason: b.reason, By: b.by, Set: stamp(b.set)}
		row.Expires, row.LeftSeconds, row.left = s.modWords().expiry(b.expires, now)
		rows = append(rows, row)
	}
	return writeList(r, rows, func(b banRow) string {
		return strings.Join([]string{b.Target, b.Kind, b.left, b.By, b.Set, dash(b.Reason)}, "\t")
	})
}

// mute NAME [--room ROOM] [--for DURATION]
func (s *Server) adminMute(r *adminReq) error {
	e, err := r.muteTarget()
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	d, expires, err := r.forFlag(now)
	if err != nil {
		return err
	}
	if m := s.reg.ByName(e.name); m != nil {
		e.name = m.Name // as the member shows it
	}
	e.by, e.expires, e.set = r.by, expires, now
	k := muteRecordKey(e.nameKey, e.roomKey)
	_, after, serr := s.opChange(k, func() (uint64, error) {
		return s.ops.put(k, expires, muteValue{Name: e.name, Room: e.room, By: e.by, Set: e.set})
	}, func() { s.mod().mute(e) })
	defer after()
	s.obs.Moderation(ModMute)
	s.log.Info("admin mute", zap.String("name", e.name), zap.String("room", e.room), zap.Duration("for", d), zap.String("by", r.by))
	w := s.modWords()
	line := fmt.Sprintf(w.didMute, e.name)
	if e.room != "" {
		line += fmt.Sprintf(w.inRoom, e.room)
	}
	if d > 0 {
		line += fmt.Sprintf(w.forPart, w.duration(d))
	}
	fmt.Fprintln(r.w, line)
	return serr
}

// unmute NAME [--room ROOM]
func (s *Server) adminUnmute(r *adminReq) error {
	t, err := r.muteTarget()
	if err != nil {
		return err
	}
	e, ok := s.mod().findMute(t.nameKey, t.roomKey)
	if !ok {
		return ErrNoMute
	}
	k := muteRecordKey(t.nameKey, t.roomKey)
	_, after, serr := s.opChange(k, func() (uint64, error) { return s.ops.del(k) },
		func() { s.mod().unmute(t.nameKey, t.roomKey) })
	defer after()
	s.obs.Moderation(ModUnmute)
	s.log.Info("admin unmute", zap.String("name", e.name), zap.String("room", e.room), zap.String("by", r.by))
	w := s.modWords()
	line := fmt.Sprintf(w.didUnmute, e.name)
	if e.room != "" {
		line += fmt.Sprintf(w.inRoom, e.room)
	}
	fmt.Fprintln(r.w, line)
	return serr
}

// muteRow is one mute in `mutes`.
type muteRow struct {
	Name        string `json:"name"`
	Room        string `json:"room,omitempty"` // absent: relay-wide
	By          string `json:"by"`
	Set         string `json:"set"`
	Expires     string `json:"expires,omitempty"`
	LeftSeconds int64  `json:"left_seconds,omitempty"`
	left        string
}

// mutes [--json]
func (s *Server) adminMutes(r *adminReq) error {
	now := s.cfg.Now()
	var rows []muteRow
	for _, e := range s.mod().muteList() {
		row := muteRow{Name: e.name, Room: e.room, By: e.by, Set: stamp(e.set)}
		row.Expires, row.LeftSeconds, row.left = s.modWords().expiry(e.expires, now)
		rows = append(rows, row)
	}
	return writeList(r, rows, func(m muteRow) string {
		room := m.Room
		if room == "" {
			room = "*"
		}
		return strings.Join([]string{m.Name, room, m.left, m.By, m.Set}, "\t")
	})
}

// lockdown [on|off]
func (s *Server) adminLockdown(r *adminReq) error {
	mod := s.mod()
	var serr error
	if len(r.args) == 1 {
		var on bool
		switch r.args[0] {
		case "on":
			on = true
		case "off":
		default:
			return fmt.Errorf("usage: lockdown on|off")
		}
		k := opKey{RecordLockdown, lockdownKey}
		var changed bool
		var after func()
		_, after, serr = s.opChange(k, func() (uint64, error) {
			if on {
				return s.ops.put(k, time.Time{}, lockdownValue{By: r.by, Set: s.cfg.Now()})
			}
			return s.ops.del(k)
		}, func() { changed = mod.setLockdown(on) })
		defer after()
		s.obs.Moderation(ModLockdown)
		s.log.Info("admin lockdown", zap.Bool("on", on), zap.Bool("changed", changed), zap.String("by", r.by))
	}
	w := s.modWords()
	if !mod.locked.Load() {
		fmt.Fprintln(r.w, w.lockOff)
		return serr
	}
	exempt := s.flood.Settings().Exempt
	list := make([]string, len(exempt))
	for i, p := range exempt {
		list[i] = p.String()
	}
	where := strings.Join(list, ", ")
	if where == "" {
		where = w.nobody
	}
	fmt.Fprintf(r.w, w.lockOn+"\n", where)
	return serr
}

// expiry words a deadline for a listing: RFC 3339, whole seconds left,
// and the time left in words ("permanent" for none).
func (w *modWording) expiry(expires, now time.Time) (stampStr string, leftSeconds int64, left string) {
	if expires.IsZero() {
		return "", 0, w.permanent
	}
	d := expires.Sub(now)
	return stamp(expires), int64((d + time.Second - 1) / time.Second), w.duration(d)
}

// stamp formats t for a listing: RFC 3339 in UTC, whole seconds.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
