package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes the parser panic or hang, that failure always comes as
// an ErrorList of positioned errors, and that success always comes with a usable Config.
// Includes resolve in a small in-memory tree (with a self-include) so that path is fuzzed too.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	corpus, _ := filepath.Glob("testdata/corpus/*.conf")
	for _, name := range append(files, corpus...) {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte("include *.conf\n"))
	f.Add([]byte("global_defs{lvs_timeouts tcp 7200 tcpfin 120 udp 300}\nvirtual_server 10.0.0.1 0{persistence_timeout\npersistence_granularity 24\nlb_algo sh\nsh-port\nsh-fallback\n}"))
	f.Add([]byte("virtual_server 10.0.0.1 80{real_server 10.0.0.2 80{TCP_CHECK{}}}"))
	f.Add([]byte("a \"b\nc\\\r\n\u00a0{}}{"))
	f.Add([]byte("$A= \\\n~SEQ(X, 1, 3) ${X} \\\n$B\n$B=${A}\n$A\n@x $C=1\n@^x ~LST({P,Q},{1,2}) $P$Q ${_RANDOM 1 2}\n"))
	lowerExpansionLimits(f)

	fsys := mapFS{
		"f/rs.conf":   "real_server 10.0.1.1 80 {\nweight 2\nTCP_CHECK {\n}\n}\n",
		"f/self.conf": "include self.conf\n",
		"f/open.conf": "global_defs {\n",
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 64<<10 {
			t.Skip("inputs are bounded to keep each run fast")
		}
		cfg, err := parse(fsys, "f/t.conf", src, Options{ConfigID: "x"})
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if e.Pos.File == "" || e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Fatalf("error without a position: %q", e.Error())
				}
				// Lower case, unless it starts with an upper-case keyword such as TCP_CHECK.
				first, _, _ := strings.Cut(e.Msg, " ")
				if first == "" || first != strings.ToUpper(first) && strings.ToLower(first[:1]) != first[:1] {
					t.Fatalf("error message empty or capitalised: %q", e.Error())
				}
			}
			if cfg != nil {
				t.Fatalf("Config returned alongside errors")
			}
			return
		}
		for _, vs := range cfg.VirtualServers {
			if !vs.Addr.IsValid() || vs.Protocol == "" || vs.LBAlgo == "" || vs.LBKind == "" || vs.DelayLoop <= 0 {
				t.Fatalf("incomplete virtual server: %+v", vs)
			}
			for _, rs := range vs.RealServers {
				if !rs.Addr.IsValid() || rs.Weight < 0 {
					t.Fatalf("bad real server: %+v", rs)
				}
			}
		}
	})
}

// lowerExpansionLimits keeps each fuzz input's ~SEQ and parameter expansion small, so a run
// explores inputs instead of generating megabytes; the limits themselves are tested elsewhere.
func lowerExpansionLimits(f *testing.F) {
	lines, bytes, seq, work := maxOutputLines, maxOutputBytes, maxSeqValues, maxExpandWork
	maxOutputLines, maxOutputBytes, maxSeqValues, maxExpandWork = 2000, 256<<10, 200, 1<<20
	f.Cleanup(func() { maxOutputLines, maxOutputBytes, maxSeqValues, maxExpandWork = lines, bytes, seq, work })
}

// FuzzLex checks that the lexer never panics, always ends with one EOF token, positions every
// token inside the input, and loses no word: every word token's text occurs in the input
// (after "\#" and "\!" unescaping).
func FuzzLex(f *testing.F) {
	f.Add([]byte("global_defs {\n router_id \"a b\" # c\n}\n"))
	f.Add([]byte("a\\\nb \\# \"unterminated\n\u00a0x{y}z!"))
	f.Fuzz(func(t *testing.T, src []byte) {
		toks, errs, _ := lex("f", src)
		if len(toks) == 0 || toks[len(toks)-1].kind != tokEOF {
			t.Fatalf("token stream does not end with EOF: %v", toks)
		}
		lines := 1 + strings.Count(string(src), "\n")
		for i, tk := range toks {
			if tk.kind == tokEOF && i != len(toks)-1 {
				t.Fatalf("EOF before the end at %d", i)
			}
			if tk.pos.Line < 1 || tk.pos.Line > lines || tk.pos.Col < 1 {
				t.Fatalf("token %q at %v outside the input", tk.text, tk.pos)
			}
			if tk.kind == tokWord && tk.text == "" {
				t.Fatalf("empty word at %v", tk.pos)
			}
		}
		for _, e := range errs {
			if e.Pos.Line < 1 {
				t.Fatalf("error without a line: %v", e)
			}
		}
	})
}

// FuzzPreprocess checks that the preprocessor never panics, stays inside its output limits,
// and maps every output line to a line of the input.
func FuzzPreprocess(f *testing.F) {
	f.Add([]byte("$A=1\n${A} $A\n~SEQ(I, 1, 3) x${I}\n@a y\n@^a z\n"))
	f.Add([]byte("$M= \\\n$N=2 \\\n${M}\n$M\n~LST({a,b},{1,2},{3,4}) $a$b\n~SEQx(H,0x10,-1,0) ${H}\n"))
	f.Add([]byte("$A=${A}${A}\n$A\n"))
	lowerExpansionLimits(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 16<<10 {
			t.Skip("inputs are bounded to keep each run fast")
		}
		pp := newPreprocessor(Options{ConfigID: "a", Instance: "i"})
		text, lines := pp.process("f", src)
		if len(text) > maxOutputBytes+len(src)+maxOutputLines {
			t.Fatalf("output %d bytes, over the limit", len(text))
		}
		srcLines := 1 + strings.Count(string(src), "\n")
		if n := strings.Count(text, "\n"); n != len(lines) {
			t.Fatalf("%d output lines but %d line numbers", n, len(lines))
		}
		for _, l := range lines {
			if l < 1 || l > srcLines {
				t.Fatalf("output line mapped to source line %d of %d", l, srcLines)
			}
		}
	})
}
