package relay

import (
	"fmt"
	"time"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// modWording is every sentence of moderation in one language: the
// refusals members see, and the admin socket's answers (as in notices.go,
// format strings for fmt.Sprintf). Refusals fit wire.MaxReasonBytes
// (checked by a test); a ban's reason is shortened to fit.
type modWording struct {
	units [4]string // day, hour, minute, second suffixes of a time left

	// refusals and what a removed member is told
	banned, bannedWhy string // a refused login: without and with the ban's reason (%s)
	left              string // appended when the ban or mute ends: %s the time left
	lockdownRefusal   string // a login refused during a lockdown
	muted, mutedRoom  string // a refused chat: relay-wide, or in room %s
	removedBan        string // the kick reason of a banned member who was online
	removedBanWhy     string // the same with the ban's reason (%s)

	// admin answers
	didBan, didUnban   string // %s: the target
	forPart, whyPart   string // %s: the duration; %s: the reason
	removed            string // %d: members removed by a ban
	didMute, didUnmute string // %s: the name
	inRoom             string // %s: the room
	lockOn, lockOff    string // lockOn's %s: the exempt prefixes
	nobody, permanent  string // no exempt prefix; a ban or mute with no end
}

var modWordings = map[wire.Lang]*modWording{
	wire.LangEN: {
		units:           [4]string{"d", "h", "m", "s"},
		banned:          "you are banned",
		bannedWhy:       "you are banned: %s",
		left:            " (%s left)",
		lockdownRefusal: "the relay is in lockdown: no new logins",
		muted:           "message not sent: you are muted",
		mutedRoom:       "message not sent: you are muted in %s",
		removedBan:      "banned",
		removedBanWhy:   "banned: %s",
		didBan:          "banned %s",
		didUnban:        "unbanned %s",
		forPart:         " for %s",
		whyPart:         ": %s",
		removed:         "removed %d members",
		didMute:         "muted %s",
		didUnmute:       "unmuted %s",
		inRoom:          " in %s",
		lockOn:          "lockdown on: new logins only from %s",
		lockOff:         "lockdown off",
		nobody:          "nowhere",
		permanent:       "permanent",
	},
	wire.LangZH: {
		units:           [4]string{"天", "小时", "分", "秒"},
		banned:          "你已被封禁",
		bannedWhy:       "你已被封禁: %s",
		left:            " (剩余 %s)",
		lockdownRefusal: "服务器已锁定: 暂不接受新登录",
		muted:           "消息未发送: 你已被禁言",
		mutedRoom:       "消息未发送: 你在 %s 已被禁言",
		removedBan:      "已被封禁",
		removedBanWhy:   "已被封禁: %s",
		didBan:          "已封禁 %s",
		didUnban:        "已解封 %s",
		forPart:         " 期限 %s",
		whyPart:         ": %s",
		removed:         "已移出 %d 名成员",
		didMute:         "已禁言 %s",
		didUnmute:       "已解除禁言 %s",
		inRoom:          " (聊天室 %s)",
		lockOn:          "已锁定: 只接受来自 %s 的新登录",
		lockOff:         "已解除锁定",
		nobody:          "无",
		permanent:       "永久",
	},
}

// modWords returns the moderation wording in force now.
func (s *Server) modWords() *modWording { return modWordings[s.knobs.load().Lang] }

// duration words d by its two largest units, rounded up to a second
// ("6d23h", "2h", "59m59s", "45s"; in Chinese "6天23小时").
func (w *modWording) duration(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	parts := [4]int64{secs / 86400, secs % 86400 / 3600, secs % 3600 / 60, secs % 60}
	for i, n := range parts {
		if n == 0 && i < len(parts)-1 {
			continue
		}
		s := fmt.Sprintf("%d%s", n, w.units[i])
		if i < len(parts)-1 && parts[i+1] != 0 {
			s += fmt.Sprintf("%d%s", parts[i+1], w.units[i+1])
		}
		return s
	}
	return "" // not reached: the seconds always return
}

// leftPart words the time left before expires, or "" if it never ends.
func (w *modWording) leftPart(expires, now time.Time) string {
	if expires.IsZero() {
		return ""
	}
	return fmt.Sprintf(w.left, w.duration(expires.Sub(now)))
}

// bannedReason is the login refusal for b: its reason (shortened so the
// whole fits wire.MaxReasonBytes) and the time left.
func (w *modWording) bannedReason(b banEntry, now time.Time) string {
	left := w.leftPart(b.expires, now)
	if b.reason == "" {
		return w.banned + left
	}
	line := fmt.Sprintf(w.bannedWhy, b.reason) + left
	if over := len(line) - wire.MaxReasonBytes; over > 0 {
		const ellipsis = "…"
		cut := wire.TruncateUTF8(b.reason, max(len(b.reason)-over-len(ellipsis), 0))
		line = fmt.Sprintf(w.bannedWhy, cut+ellipsis) + left
	}
	return line
}

// mutedReason is the chat refusal for e.
func (w *modWording) mutedReason(e muteEntry, now time.Time) string {
	if e.room == "" {
		return w.muted + w.leftPart(e.expires, now)
	}
	return fmt.Sprintf(w.mutedRoom, e.room) + w.leftPart(e.expires, now)
}

// removedReason is the kick reason given to a banned member who was online.
func (w *modWording) removedReason(why string) string {
	if why == "" {
		return w.removedBan
	}
	return fmt.Sprintf(w.removedBanWhy, why)
}
