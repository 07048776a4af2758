package relay

import (
	"strings"
	"testing"
)

func TestAdminArgs(t *testing.T) {
	tests := []struct {
		cmd, args string
		want      adminReq // cmd and w unused
		err       string
	}{
		{"ban", "alice --for 7d spamming  links", adminReq{args: []string{"alice"}, flags: map[string]string{"for": "7d"}, text: "spamming  links"}, ""},
		{"ban", "--for 7d alice", adminReq{args: []string{"alice"}, flags: map[string]string{"for": "7d"}}, ""},
		{"ban", "alice spamming --for 7d", adminReq{args: []string{"alice"}, flags: map[string]string{}, text: "spamming --for 7d"}, ""},
		{"ban", "alice -- --for is a reason", adminReq{args: []string{"alice"}, flags: map[string]string{}, text: "--for is a reason"}, ""},
		{"ban", "alice --fro 7d", adminReq{}, "has no flag --fro"},
		{"ban", "alice --for", adminReq{}, "--for needs a value"},
		{"ban", "alice --for 1h --for 2h", adminReq{}, "given twice"},
		{"ban", "--for 1h", adminReq{}, "needs an argument"},
		{"mute", "bob --room dev --for 10m", adminReq{args: []string{"bob"}, flags: map[string]string{"room": "dev", "for": "10m"}}, ""},
		{"mute", "bob extra", adminReq{}, `unexpected "extra"`},
		{"bans", "--json", adminReq{flags: map[string]string{}, json: true}, ""},
		{"bans", "--room x", adminReq{}, "has no flag --room"},
		{"who", "--json", adminReq{flags: map[string]string{}, json: true}, ""},
		{"notice", "--json", adminReq{}, "has no flag --json"},
		{"notice", "--- maintenance ---", adminReq{flags: map[string]string{}, text: "--- maintenance ---"}, ""},
		{"kick", "bob", adminReq{args: []string{"bob"}, flags: map[string]string{}}, ""},
		{"lockdown", "", adminReq{flags: map[string]string{}}, ""},
		{"lockdown", "on now", adminReq{}, `unexpected "now"`},
	}
	for _, tt := range tests {
		c := adminCommands[tt.cmd]
		got, err := c.parse(tt.cmd, tt.args)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s %q: error %v, want %q", tt.cmd, tt.args, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", tt.cmd, tt.args, err)
			continue
		}
		if strings.Join(got.args, "|") != strings.Join(tt.want.args, "|") || got.text != tt.want.text || got.json != tt.want.json ||
			len(got.flags) != len(tt.want.flags) {
			t.Errorf("%s %q = %+v, want %+v", tt.cmd, tt.args, got, tt.want)
		}
		for k, v := range tt.want.flags {
			if got.flags[k] != v {
				t.Errorf("%s %q: --%s %q, want %q", tt.cmd, tt.args, k, got.flags[k], v)
			}
		}
	}
}
