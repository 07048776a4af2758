package relay

import (
	"strings"
	"sync"

	"github.com/chatrelay/chatrelay/relay/wire"
)

// slab hands out immutable copies of small byte slices carved from shared
// blocks, so that the lines the relay encodes for every event (the v2
// datagram kept in the ring for repair, the classic line of a chat) cost
// one allocation per block of about a hundred, not one each. A block is
// never written again where it was handed out, and the GC frees it once no
// copy in it is referenced, so a copy may be kept and read by anyone for
// as long as they like. A slab is not safe for concurrent use.
type slab struct{ block []byte }

const (
	slabBlock = 16 << 10      // bytes per block
	slabOwn   = slabBlock / 8 // copies longer than this get an allocation of their own
)

// copy returns an immutable copy of b (its capacity is its length, so an
// append to it cannot write into the block).
func (s *slab) copy(b []byte) []byte {
	if len(b) > slabOwn {
		return append([]byte(nil), b...)
	}
	if len(s.block)+len(b) > cap(s.block) {
		s.block = make([]byte, 0, slabBlock)
	}
	n := len(s.block)
	s.block = append(s.block, b...)
	return s.block[n:len(s.block):len(s.block)]
}

// sendLines is where the classic lines of chats and the v2 replies the
// relay sends are copied to.
var sendLines struct {
	mu sync.Mutex // protects s
	s  slab
}

// keepLine returns an immutable copy of b carved from sendLines.
func keepLine(b []byte) []byte {
	sendLines.mu.Lock()
	defer sendLines.mu.Unlock()
	return sendLines.s.copy(b)
}

// encodeV2Reply is EncodeV2(f) without, in steady state, an allocation:
// the datagram is encoded on the stack and copied into a slab. The result
// is immutable and may be kept.
func encodeV2Reply(f *wire.Frame) []byte {
	var buf [512]byte
	return keepLine(wire.AppendFrame(wire.AppendV2Header(buf[:0]), f))
}

// chatLine is classicLine(s.words().chat, name, text) without fmt and, in
// steady state, without an allocation: the line is formatted on the stack
// and copied into a slab. The result is immutable and may be kept.
func (s *Server) chatLine(name, text string) []byte { return s.words().chatLine(name, text) }

// chatLine is chatLine in the wording w.
func (w *wording) chatLine(name, text string) []byte {
	var buf [wire.MaxClassicReply]byte
	b, ok := appendLine(buf[:0], w.Chat, name, text)
	if !ok || len(b) > wire.MaxClassicReply {
		return classicLine(w.Chat, name, text) // fmt, and the cut
	}
	return keepLine(b)
}

// appendLine appends format with each %s replaced by the next arg and %%
// by %, as fmt.Sprintf does with string arguments; it reports false for
// any other verb or a count of %s other than len(args), which only fmt
// formats.
func appendLine(dst []byte, format string, args ...string) ([]byte, bool) {
	for {
		i := strings.IndexByte(format, '%')
		if i < 0 {
			dst = append(dst, format...)
			break
		}
		if i+1 >= len(format) {
			return dst, false // a trailing %
		}
		dst = append(dst, format[:i]...)
		switch format[i+1] {
		case 's':
			if len(args) == 0 {
				return dst, false
			}
			dst = append(dst, args[0]...)
			args = args[1:]
		case '%':
			dst = append(dst, '%')
		default:
			return dst, false
		}
		format = format[i+2:]
	}
	return dst, len(args) == 0
}
