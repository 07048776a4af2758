package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"time"
)

// cookies makes and checks stateless address-validation cookies: proof that
// a v2 client receives datagrams at the address it sends from (QUIC Retry,
// WireGuard cookies). A cookie is base64url(bucket || HMAC-SHA256(secret,
// bucket || address)[:16]), where bucket is the minute it was made; it is
// valid for that minute and the next, for that IP and port only.
type cookies struct {
	secret [32]byte
}

const cookieBucket = 60 // seconds

func newCookies() *cookies {
	c := &cookies{}
	if _, err := rand.Read(c.secret[:]); err != nil {
		panic("relay: crypto/rand: " + err.Error())
	}
	return c
}

func (c *cookies) mac(bucket uint32, addr netip.AddrPort) []byte {
	var msg [4 + 16 + 2]byte
	binary.BigEndian.PutUint32(msg[:4], bucket)
	a := addr.Addr().As16()
	copy(msg[4:20], a[:])
	binary.BigEndian.PutUint16(msg[20:], addr.Port())
	h := hmac.New(sha256.New, c.secret[:])
	h.Write(msg[:])
	return h.Sum(nil)[:16]
}

// make returns a cookie for addr at now.
func (c *cookies) make(addr netip.AddrPort, now time.Time) string {
	bucket := uint32(now.Unix() / cookieBucket)
	var b [20]byte
	binary.BigEndian.PutUint32(b[:4], bucket)
	copy(b[4:], c.mac(bucket, addr))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// valid reports whether cookie was made for addr in this minute or the last.
func (c *cookies) valid(cookie string, addr netip.AddrPort, now time.Time) bool {
	b, err := base64.RawURLEncoding.DecodeString(cookie)
	if err != nil || len(b) != 20 {
		return false
	}
	bucket := binary.BigEndian.Uint32(b[:4])
	cur := uint32(now.Unix() / cookieBucket)
	if bucket != cur && bucket+1 != cur {
		return false
	}
	return hmac.Equal(b[4:], c.mac(bucket, addr))
}
