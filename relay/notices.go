package relay

import (
	"errors"
	"fmt"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// wording holds every sentence the relay sends in one language. Reasons are
// at most MaxReasonBytes bytes (checked by a test); none is "OK".
type wording struct {
	wire.EventWords        // the room events' format strings
	kickedSelf             string
	shutdown               string
	refusedControl         string
	idleSelf               string
	noRoom, unknownSession string
	noSuchMember           string
	unsupported            string
	roomRefusals           map[string]string // join refusals by wire code
	malformed              string
	throttled              string
	reasonBanned           string
	unavailable            string // the store did not answer: a login or a chat

	reasonInvalid, reasonReserved, reasonTaken, reasonFull, reasonOtherName string
}

var wordings = map[wire.Lang]*wording{
	wire.LangEN: {
		EventWords:     wire.Words(wire.LangEN),
		kickedSelf:     "you were removed by the administrator: %s",
		shutdown:       "the relay is shutting down",
		refusedControl: "message not sent: control characters are not allowed",
		idleSelf:       "you were disconnected after being idle too long",
		noRoom:         "you are not in that room",
		noSuchMember:   "nobody of that name is online",
		unsupported:    "that member's client cannot receive private messages",
		roomRefusals: map[string]string{
			wire.CodeRoomInvalid:  "invalid room name: 1-64 characters, no spaces, not starting with @",
			wire.CodeRoomsFull:    "too many rooms on this relay",
			wire.CodeTooManyRooms: "you are in too many rooms",
			wire.CodeRoomFull:     "the room is full",
			wire.CodeBadKey:       "wrong room key",
		},
		unknownSession:  "unknown or expired session: log in again",
		malformed:       "malformed frame",
		throttled:       "message not sent: you are sending too fast",
		reasonBanned:    "too many refused logins: try again later",
		unavailable:     "the relay cannot reach its store: try again shortly",
		reasonInvalid:   "invalid name: use 1-32 letters or digits, no spaces",
		reasonReserved:  "name reserved",
		reasonTaken:     "name taken",
		reasonFull:      "full",
		reasonOtherName: "already logged in under another name",
	},
	wire.LangZH: {
		EventWords:     wire.Words(wire.LangZH),
		kickedSelf:     "你已被管理员移出聊天室: %s",
		shutdown:       "服务器即将关闭",
		refusedControl: "消息未发送: 不允许控制字符",
		idleSelf:       "你因长时间无活动已被断开",
		noRoom:         "你不在这个聊天室",
		noSuchMember:   "没有这个在线用户",
		unsupported:    "对方的客户端不能接收私信",
		roomRefusals: map[string]string{
			wire.CodeRoomInvalid:  "聊天室名无效: 1-64 个字符, 不能有空格, 不能以 @ 开头",
			wire.CodeRoomsFull:    "服务器上的聊天室太多了",
			wire.CodeTooManyRooms: "你加入的聊天室太多了",
			wire.CodeRoomFull:     "聊天室已满",
			wire.CodeBadKey:       "聊天室密码错误",
		},
		unknownSession:  "会话不存在或已过期: 请重新登录",
		malformed:       "格式错误",
		throttled:       "消息未发送: 发送太快了",
		reasonBanned:    "登录失败次数过多: 请稍后再试",
		unavailable:     "服务器暂时无法访问存储: 请稍后再试",
		reasonInvalid:   "用户名无效: 1-32 个字符, 不能有空格",
		reasonReserved:  "用户名为保留名",
		reasonTaken:     "用户名已被占用",
		reasonFull:      "聊天室已满",
		reasonOtherName: "此地址已用其他用户名登录",
	},
}

// joinRefusal words a join refusal by its code.
func (w *wording) joinRefusal(code string) string {
	if r, ok := w.roomRefusals[code]; ok {
		return r
	}
	return w.malformed
}

// dmRefusal words the refusal of a direct message by its code.
func (w *wording) dmRefusal(code string) string {
	switch code {
	case wire.CodeUnsupported:
		return w.unsupported
	case wire.CodeUnavailable:
		return w.unavailable
	}
	return w.noSuchMember
}

// refusal returns the login refusal reason for err.
func (w *wording) refusal(err error) (reason, result string) {
	if r, ok := err.(loginRefusal); ok {
		return r.reason, r.code
	}
	if errors.Is(err, ErrUnavailable) {
		return w.unavailable, LoginUnavailable
	}
	switch err {
	case wire.ErrNameReserved:
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
	return []byte(wire.TruncateUTF8(fmt.Sprintf(format, args...), wire.MaxClassicReply))
}

func formatf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
