package relay

import (
	"fmt"
	"strings"
)

// Lang selects the wording of every text the relay sends.
type Lang string

// Supported languages.
const (
	LangEN Lang = "en" // default
	LangZH Lang = "zh" // the classic teaching chat room's wording
)

// ParseLang accepts "en" or "zh".
func ParseLang(s string) (Lang, error) {
	switch l := Lang(strings.ToLower(s)); l {
	case LangEN, LangZH:
		return l, nil
	}
	return "", fmt.Errorf("relay: unknown language %q (want en or zh)", s)
}

// wording holds every sentence the relay sends in one language. Reasons are
// at most MaxReasonBytes bytes (checked by a test); none is "OK".
type wording struct {
	join, leave, chat, admin string // format strings
	kicked, kickedSelf       string
	timedOut                 string
	shutdown                 string
	refusedControl           string
	idleSelf                 string
	noRoom, unknownSession   string
	malformed                string
	throttled                string
	reasonBanned             string

	reasonInvalid, reasonReserved, reasonTaken, reasonFull, reasonOtherName string
}

var wordings = map[Lang]*wording{
	LangEN: {
		join:            "%s joined the chat room",
		leave:           "%s left the chat room",
		chat:            "%s says: %s",
		admin:           "Admin notice: %s",
		kicked:          "%s was removed by the administrator: %s",
		kickedSelf:      "you were removed by the administrator: %s",
		timedOut:        "%s timed out",
		shutdown:        "the relay is shutting down",
		refusedControl:  "message not sent: control characters are not allowed",
		idleSelf:        "you were disconnected after being idle too long",
		noRoom:          "no such room",
		unknownSession:  "unknown or expired session: log in again",
		malformed:       "malformed frame",
		throttled:       "message not sent: you are sending too fast",
		reasonBanned:    "too many refused logins: try again later",
		reasonInvalid:   "invalid name: use 1-32 letters or digits, no spaces",
		reasonReserved:  "name reserved",
		reasonTaken:     "name taken",
		reasonFull:      "full",
		reasonOtherName: "already logged in under another name",
	},
	LangZH: {
		join:            "%s 进入聊天室",
		leave:           "%s 退出了聊天室",
		chat:            "%s 说: %s",
		admin:           "管理员消息: %s",
		kicked:          "%s 被管理员移出聊天室: %s",
		kickedSelf:      "你已被管理员移出聊天室: %s",
		timedOut:        "%s 超时离开",
		shutdown:        "服务器即将关闭",
		refusedControl:  "消息未发送: 不允许控制字符",
		idleSelf:        "你因长时间无活动已被断开",
		noRoom:          "没有这个聊天室",
		unknownSession:  "会话不存在或已过期: 请重新登录",
		malformed:       "格式错误",
		throttled:       "消息未发送: 发送太快了",
		reasonBanned:    "登录失败次数过多: 请稍后再试",
		reasonInvalid:   "用户名无效: 1-32 个字符, 不能有空格",
		reasonReserved:  "用户名为保留名",
		reasonTaken:     "用户名已被占用",
		reasonFull:      "聊天室已满",
		reasonOtherName: "此地址已用其他用户名登录",
	},
}

// refusal returns the login refusal reason for err.
func (w *wording) refusal(err error) (reason, result string) {
	switch err {
	case ErrNameReserved:
		return w.reasonReserved, LoginReserved
	case ErrNameTaken:
		return w.reasonTaken, LoginTaken
	case ErrFull:
		return w.reasonFull, LoginFull
	case ErrOtherName:
		return w.reasonOtherName, LoginOtherName
	case ErrBanned:
		return w.reasonBanned, LoginBanned
	default:
		return w.reasonInvalid, LoginInvalid
	}
}

// classicLine formats one classic datagram and bounds it to MaxClassicReply
// bytes, never cutting inside a UTF-8 sequence.
func classicLine(format string, args ...any) []byte {
	return []byte(TruncateUTF8(fmt.Sprintf(format, args...), MaxClassicReply))
}

func formatf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// EventWords is how the relay words room events for classic clients in one
// language: format strings for fmt.Sprintf. v2 clients, which receive the
// events as frames, use it to word them the same way.
type EventWords struct {
	Join     string // %s: name
	Leave    string // %s: name
	Chat     string // %s: name, %s: text
	Admin    string // %s: text
	Kicked   string // %s: name, %s: reason
	TimedOut string // %s: name
}

// Words returns the room-event wording of lang (English if lang is not
// known).
func Words(lang Lang) EventWords {
	w, ok := wordings[lang]
	if !ok {
		w = wordings[LangEN]
	}
	return EventWords{Join: w.join, Leave: w.leave, Chat: w.chat, Admin: w.admin, Kicked: w.kicked, TimedOut: w.timedOut}
}
