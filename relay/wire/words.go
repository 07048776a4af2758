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
	JoinMany  string // languages that count everyone (CountsAll): %s the names, comma-separated; %d how many joined in all
	LeaveMany string // as JoinMany
	Whisper   string // %s: name, %s: text (a direct message to a classic member)
	Topic     string // %s: the new topic
	CountsAll bool   // a batch is worded with JoinMany or LeaveMany; else Join or Leave with a list ("a, b and 3 others")
}

var eventWords = map[Lang]EventWords{
	LangEN: {
		Join:     "%s joined the chat room",
		Leave:    "%s left the chat room",
		Chat:     "%s says: %s",
		Admin:    "Admin notice: %s",
		Kicked:   "%s was removed by the administrator: %s",
		TimedOut: "%s timed out",

		Whisper: "%s whispers: %s",
		Topic:   "the topic is now: %s",
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

// Batch words a batch of count joins (join) or leaves naming names, the
// first of them (count >= len(names) >= 1): "alice, bob, carol, dave, erin
// and 95 others joined the chat room", "alice and 1 other left the chat
// room", "alice, bob and carol joined the chat room" (all named); in
// Chinese "alice, bob 等 100 人进入聊天室".
func (w EventWords) Batch(join bool, names []string, count int) string {
	one, many := w.Join, w.JoinMany
	if !join {
		one, many = w.Leave, w.LeaveMany
	}
	if w.CountsAll {
		return fmt.Sprintf(many, strings.Join(names, ", "), max(count, len(names)))
	}
	var who string
	switch others := count - len(names); {
	case others <= 0 && len(names) == 1:
		who = names[0]
	case others <= 0:
		who = strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	case others == 1:
		who = strings.Join(names, ", ") + " and 1 other"
	default:
		who = fmt.Sprintf("%s and %d others", strings.Join(names, ", "), others)
	}
	return fmt.Sprintf(one, who)
}

// Words returns the room-event wording of lang (English if lang is not
// known).
func Words(lang Lang) EventWords {
	if w, ok := eventWords[lang]; ok {
		return w
	}
	return eventWords[LangEN]
}
