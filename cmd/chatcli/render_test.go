package main

import (
	"strings"
	"testing"
)

func TestInputLine(t *testing.T) {
	tests := []struct {
		name       string
		value      string
		pos, off   int
		width      int
		wantLine   string
		wantCursor int
	}{
		{"empty", "", 0, 0, 20, "> ", 2},
		{"ascii end", "hello", 5, 0, 20, "> hello", 7},
		{"cjk end", "你好世界", 4, 0, 20, "> 你好世界", 10},
		{"cjk middle", "你好世界", 2, 0, 20, "> 你好世界", 6},
		// 10 columns: prompt 2, then 8 for text and the cursor cell.
		{"cjk scrolled to end", "一二三四五六七八", 8, 0, 10, "> 六七八", 8},
		{"cjk cursor on wide rune", "一二三四五六七八", 0, 5, 10, "> 一二三四", 2},
		{"mixed", "ab一二三cd", 7, 0, 10, "> 二三cd", 8},
		{"tiny screen drops the prompt", "一二", 1, 0, 3, "二", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, col := inputLine("> ", []rune(tt.value), tt.pos, tt.off, tt.width)
			if line != tt.wantLine || col != tt.wantCursor {
				t.Errorf("inputLine(%q, pos %d) = %q, cursor %d; want %q, cursor %d",
					tt.value, tt.pos, line, col, tt.wantLine, tt.wantCursor)
			}
			if w := ansiWidth(line); w > tt.width {
				t.Errorf("line %q is %d columns, wider than %d", line, w, tt.width)
			}
		})
	}
}

// Every cursor position of a long mixed line keeps the line within the
// screen and the cursor on it.
func TestInputLineAllPositions(t *testing.T) {
	value := []rune(strings.Repeat("测试ab中文，", 12))
	for _, width := range []int{5, 10, 31, 80} {
		off := 0
		for pos := 0; pos <= len(value); pos++ {
			off = inputOffset(value, pos, off, width-2)
			line, col := inputLine("> ", value, pos, off, width)
			if w := ansiWidth(line); w > width {
				t.Fatalf("width %d pos %d: line %d columns", width, pos, w)
			}
			if col < 2 || col >= width {
				t.Fatalf("width %d pos %d: cursor at %d", width, pos, col)
			}
			want := 2
			for _, r := range value[off:pos] {
				want += runeWidth(r)
			}
			if col != want {
				t.Fatalf("width %d pos %d: cursor at %d, want %d", width, pos, col, want)
			}
		}
	}
}

func ansiWidth(s string) int {
	w := 0
	for _, r := range s {
		w += runeWidth(r)
	}
	return w
}
