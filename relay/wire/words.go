package wire

import (
	"fmt"
	"strings"
)

// Lang selects the wording of every text the relay sends, and of the room
// events a v2 client shows.
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
	return "", fmt.Errorf("unknown language %q (want en or zh)", s)
}

// EventWords is how room events are worded for classic clients in one
// language: format strings for fmt.Sprintf. They are part of the classic
// protocol (a classic client shows the line as it comes); v2 clients, which
// receive the events as frames, word them the same way.
type EventWords struct {
	Join     string // %s: name
	Leave    string // %s: name
	Chat     string // %s: name, %s: text
	Admin    string // %s: text
	Kicked   string // %s: name, %s: reason
	TimedOut string // %s: name
	// Revision 1.
	JoinMany  string // %s: the first names, comma-separated; %d: how many others (English) or in all (Chinese)
	LeaveMany string // as JoinMany
	Whisper   string // %s: name, %s: text (a direct message to a classic member)
	Topic     string // %s: the new topic
	CountsAll bool   // JoinMany and LeaveMany count everyone, not the others
}

var eventWords = map[Lang]EventWords{
	LangEN: {
		Join:     "%s joined the chat room",
		Leave:    "%s left the chat room",
		Chat:     "%s says: %s",
		Admin:    "Admin notice: %s",
		Kicked:   "%s was removed by the administrator: %s",
		TimedOut: "%s timed out",

		JoinMany:  "%s and %d others joined the chat room",
		LeaveMany: "%s and %d others left the chat room",
		Whisper:   "%s whispers: %s",
		Topic:     "the topic is now: %s",
	},
	LangZH: {
		Join:     "%s 进入聊天室",
		Leave:    "%s 退出了聊天室",
		Chat:     "%s 说: %s",
		Admin:    "管理员消息: %s",
		Kicked:   "%s 被管理员移出聊天室: %s",
		TimedOut: "%s 超时离开",

		JoinMany:  "%s 等 %d 人进入聊天室",
		LeaveMany: "%s 等 %d 人退出了聊天室",
		Whisper:   "%s 悄悄对你说: %s",
		Topic:     "话题已改为: %s",
		CountsAll: true,
	},
}

// Many words a batch of count joins or leaves (format is JoinMany or
// LeaveMany) naming the first of them: "alice, bob and 98 others joined"
// in English, "alice, bob 等 100 人进入聊天室" in Chinese.
func (w EventWords) Many(format string, names []string, count int) string {
	n := count - len(names) // "and 98 others"
	if w.CountsAll {
		n = count // "等 100 人"
	}
	return fmt.Sprintf(format, strings.Join(names, ", "), n)
}

// Words returns the room-event wording of lang (English if lang is not
// known).
func Words(lang Lang) EventWords {
	if w, ok := eventWords[lang]; ok {
		return w
	}
	return eventWords[LangEN]
}
