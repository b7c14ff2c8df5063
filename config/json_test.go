package config

import (
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestJSONGolden pins the `sluice config --json` schema: a change to any key or value format
// shows up as a diff of testdata/json/*.json (regenerate with -update, and bump
// JSONSchemaVersion when a key is renamed or removed).
func TestJSONGolden(t *testing.T) {
	for _, name := range []string{"dr", "typed"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := ParseFileWith("testdata/json/"+name+".conf", Options{ConfigID: "lb1"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.JSON()
			if err != nil {
				t.Fatal(err)
			}
			golden := "testdata/json/" + name + ".json"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)+"\n"); diff != "" {
				t.Errorf("JSON (-want +got):\n%s", diff)
			}
		})
	}
}

// TestJSONKeys checks the schema's promises on every object: snake_case keys, and the
// documented value formats.
func TestJSONKeys(t *testing.T) {
	cfg, err := ParseFileWith("testdata/json/typed.conf", Options{ConfigID: "lb1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["schema"] != JSONSchemaVersion {
		t.Errorf("schema = %v", doc["schema"])
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !snake.MatchString(k) {
					t.Errorf("%s: key %q is not snake_case", path, k)
				}
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		}
	}
	walk("", doc)
	vs := doc["config"].(map[string]any)["virtual_servers"].([]any)[0].(map[string]any)
	if vs["delay_loop"] != 6.0 || vs["addr"] != "192.0.2.10" || vs["pos"] != "testdata/json/typed.conf:21:1" {
		t.Errorf("virtual server formats: delay_loop %v addr %v pos %v", vs["delay_loop"], vs["addr"], vs["pos"])
	}
}
