package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tok is a token written compactly for tables: kind, text, line, col.
type tok struct {
	Kind      string
	Text      string
	Line, Col int
}

func compact(toks []token) []tok {
	names := map[tokenKind]string{tokEOF: "EOF", tokNewline: "NL", tokWord: "W", tokString: "S", tokLBrace: "{", tokRBrace: "}"}
	out := make([]tok, 0, len(toks))
	for _, t := range toks {
		out = append(out, tok{names[t.kind], t.text, t.pos.Line, t.pos.Col})
	}
	return out
}

func TestLex(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		want      []tok
		wantErrs  []string
		wantWarns []string
	}{
		{
			name: "words and braces",
			src:  "a b {\n}",
			want: []tok{{"W", "a", 1, 1}, {"W", "b", 1, 3}, {"{", "{", 1, 5}, {"NL", "", 1, 6}, {"}", "}", 2, 1}, {"EOF", "", 2, 2}},
		},
		{
			name: "braces glued to words",
			src:  "rs 80{weight 1}}",
			want: []tok{{"W", "rs", 1, 1}, {"W", "80", 1, 4}, {"{", "{", 1, 6}, {"W", "weight", 1, 7}, {"W", "1", 1, 14}, {"}", "}", 1, 15}, {"}", "}", 1, 16}, {"EOF", "", 1, 17}},
		},
		{
			name: "comments anywhere outside quotes",
			src:  "a # c1\nb! c2 {\n# whole line\n",
			want: []tok{{"W", "a", 1, 1}, {"NL", "", 1, 7}, {"W", "b", 2, 1}, {"NL", "", 2, 8}, {"NL", "", 3, 13}, {"EOF", "", 4, 1}},
		},
		{
			name: "escaped comment characters",
			src:  `pass a\#b\!c`,
			want: []tok{{"W", "pass", 1, 1}, {"W", "a#b!c", 1, 6}, {"EOF", "", 1, 13}},
		},
		{
			name: "quoted string keeps spaces, comment characters and braces",
			src:  `id "a b # { }" x`,
			want: []tok{{"W", "id", 1, 1}, {"S", "a b # { }", 1, 4}, {"W", "x", 1, 16}, {"EOF", "", 1, 17}},
		},
		{
			name: "quote splits a word as in keepalived",
			src:  `ab"cd"ef`,
			want: []tok{{"W", "ab", 1, 1}, {"S", "cd", 1, 3}, {"W", "ef", 1, 7}, {"EOF", "", 1, 9}},
		},
		{
			name: "single quotes are ordinary",
			src:  `a 'b c'`,
			want: []tok{{"W", "a", 1, 1}, {"W", "'b", 1, 3}, {"W", "c'", 1, 6}, {"EOF", "", 1, 8}},
		},
		{
			name:     "unterminated quote",
			src:      "a \"bc\nd",
			want:     []tok{{"W", "a", 1, 1}, {"S", "bc", 1, 3}, {"NL", "", 1, 6}, {"W", "d", 2, 1}, {"EOF", "", 2, 2}},
			wantErrs: []string{`t.conf:1:3: unterminated quoted string: expected a closing '"' before the end of the line`},
		},
		{
			name:     "unterminated quote at end of file",
			src:      `a "b`,
			want:     []tok{{"W", "a", 1, 1}, {"S", "b", 1, 3}, {"EOF", "", 1, 5}},
			wantErrs: []string{`t.conf:1:3: unterminated quoted string: expected a closing '"' before the end of the file`},
		},
		{
			name: "CRLF and tabs",
			src:  "a\tb\r\n\tc\r\n",
			want: []tok{{"W", "a", 1, 1}, {"W", "b", 1, 3}, {"NL", "", 1, 5}, {"W", "c", 2, 2}, {"NL", "", 2, 4}, {"EOF", "", 3, 1}},
		},
		{
			name: "line continuation",
			src:  "a \\\nb \\\r\nc\nd",
			want: []tok{{"W", "a", 1, 1}, {"W", "b", 2, 1}, {"W", "c", 3, 1}, {"NL", "", 3, 2}, {"W", "d", 4, 1}, {"EOF", "", 4, 2}},
		},
		{
			name: "continuation ends a word",
			src:  "ab\\\ncd",
			want: []tok{{"W", "ab", 1, 1}, {"W", "cd", 2, 1}, {"EOF", "", 2, 3}},
		},
		{
			name: "backslash elsewhere is literal",
			src:  `a\b \`,
			want: []tok{{"W", `a\b`, 1, 1}, {"W", `\`, 1, 5}, {"EOF", "", 1, 6}},
		},
		{
			name:      "non-breaking space separates, warned once per line",
			src:       "weight\u00a01\u00a0\u00a0x\ny\u00a0z",
			want:      []tok{{"W", "weight", 1, 1}, {"W", "1", 1, 9}, {"W", "x", 1, 14}, {"NL", "", 1, 15}, {"W", "y", 2, 1}, {"W", "z", 2, 4}, {"EOF", "", 2, 5}},
			wantWarns: []string{"t.conf:1:7: non-breaking space (U+00A0) treated as a space; keepalived would make it part of a word", "t.conf:2:2: non-breaking space (U+00A0) treated as a space; keepalived would make it part of a word"},
		},
		{
			name: "UTF-8 in comments and words",
			src:  "# café ✓\nrouter_id lb-é",
			want: []tok{{"NL", "", 1, 12}, {"W", "router_id", 2, 1}, {"W", "lb-é", 2, 11}, {"EOF", "", 2, 16}},
		},
		{
			name: "empty input",
			src:  "",
			want: []tok{{"EOF", "", 1, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, errs, warns := lex("t.conf", []byte(tt.src))
			if diff := cmp.Diff(tt.want, compact(toks)); diff != "" {
				t.Errorf("tokens (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantErrs, errStrings(errs)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantWarns, warnStrings(warns)); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func errStrings(l ErrorList) []string {
	var out []string
	for _, e := range l {
		out = append(out, e.Error())
	}
	return out
}

func warnStrings(ws []Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.String())
	}
	return out
}
