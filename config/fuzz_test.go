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
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte("include *.conf\n"))
	f.Add([]byte("virtual_server 10.0.0.1 80{real_server 10.0.0.2 80{TCP_CHECK{}}}"))
	f.Add([]byte("a \"b\nc\\\r\n\u00a0{}}{"))

	fsys := mapFS{
		"f/rs.conf":   "real_server 10.0.1.1 80 {\nweight 2\nTCP_CHECK {\n}\n}\n",
		"f/self.conf": "include self.conf\n",
		"f/open.conf": "global_defs {\n",
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 64<<10 {
			t.Skip("inputs are bounded to keep each run fast")
		}
		cfg, err := parse(fsys, "f/t.conf", src)
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
