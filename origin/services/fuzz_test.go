package services

import (
	"strings"
	"testing"
)

func FuzzMentionedNames(f *testing.F) {
	for _, s := range []string{"hi @bob", "@alice@bob", "a@b.c", "@", "@@@x", "@ab", "@" + strings.Repeat("a", 30), "é@bob"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		seen := map[string]bool{}
		for _, n := range mentionedNames(text) {
			if !validUsername(n) || seen[n] {
				t.Fatalf("mentionedNames(%q) returned %q", text, n)
			}
			seen[n] = true
		}
	})
}

func FuzzValidMediaName(f *testing.F) {
	for _, s := range []string{strings.Repeat("a", 64) + ".png", "../x.png", strings.Repeat("A", 64) + ".png", ".png", strings.Repeat("0", 64) + ".png.exe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if validMediaName(name) && (len(name) < 68 || strings.ContainsAny(name, "/\\\x00") || strings.Count(name, ".") != 1) {
			t.Fatalf("accepted %q", name)
		}
	})
}

func TestMentionedNames(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"hi @Bob and @bob", "bob"},
		{"mail a@b.com", ""},
		{"@alice,@carol!", "alice carol"},
		{"@ab too short, @" + strings.Repeat("x", 21) + " too long", ""},
	}
	for _, tc := range tests {
		if got := strings.Join(mentionedNames(tc.in), " "); got != tc.want {
			t.Errorf("mentionedNames(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
