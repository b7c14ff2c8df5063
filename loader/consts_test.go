package loader

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConstsMatchC keeps consts.go in step with bpf/consts.h: bpf2go cannot export the C enums
// because no BTF-described object uses them.
func TestConstsMatchC(t *testing.T) {
	src, err := os.ReadFile("../bpf/consts.h")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)

	defines := map[string]int64{}
	for _, m := range regexp.MustCompile(`(?m)^#define (\w+) (\(2 \* MAX_SERVICES\)|0x[0-9a-fA-F]+U?|\d+)`).FindAllStringSubmatch(text, -1) {
		v := m[2]
		if v == "(2 * MAX_SERVICES)" {
			defines[m[1]] = 2 * defines["MAX_SERVICES"]
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(v, "U"), 0, 64)
		if err != nil {
			t.Fatalf("parse %s: %v", m[0], err)
		}
		defines[m[1]] = n
	}
	wantDefines := map[string]int64{
		"MAX_SERVICES":           maxServices,
		"MAX_BACKENDS":           maxBackends,
		"SEL_SLOTS":              selSlots,
		"FLOW_TABLE_SIZE":        DefaultFlowTableSize,
		"LB_HASH_SEED":           hashSeed,
		"UNCONFIRMED_TABLE_SIZE": DefaultUnconfirmedTableSize,
		"MAX_EXT_HDRS":           maxExtHdrs,
		"PERSIST_TABLE_SIZE":     persistTableSize,
	}
	if diff := cmp.Diff(wantDefines, defines); diff != "" {
		t.Errorf("#defines differ (-go +c):\n%s", diff)
	}

	enumVals := map[string]int64{}
	for _, m := range regexp.MustCompile(`(?m)^\t(\w+) = (\d+|1 << \d+),$`).FindAllStringSubmatch(text, -1) {
		v := m[2]
		if s, ok := strings.CutPrefix(v, "1 << "); ok {
			n, _ := strconv.Atoi(s)
			enumVals[m[1]] = 1 << n
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		enumVals[m[1]] = n
	}
	wantEnums := map[string]int64{
		"LB_AF_INET":        afInet,
		"LB_AF_INET6":       afInet6,
		"SVC_F_RR":          svcFlagRR,
		"BE_F_UP":           beFlagUp,
		"BE_F_NEW":          beFlagNew,
		"SVC_HASH_SRC":      hashSrc,
		"SVC_HASH_SRC_PORT": hashSrcPort,
		"SVC_HASH_DST":      hashDst,
		"FLOW_F_FIN":        flowFlagFin,
		"LB_METHOD_DR":      methodDR,
		"LB_METHOD_TUN":     methodTUN,
		"LB_METHOD_NAT":     methodNAT,
		"LB_ENCAP_IPIP":     encapIPIP,
		"LB_ENCAP_GUE":      encapGUE,
		"GLOBAL_F_NAT":      globalFlagNAT,
		"PASS_NOT_IP":       0,
	}
	if diff := cmp.Diff(wantEnums, enumVals); diff != "" {
		t.Errorf("enum values differ (-go +c):\n%s", diff)
	}

	body := regexp.MustCompile(`(?s)enum lb_reason \{(.*?)\};`).FindStringSubmatch(text)
	if body == nil {
		t.Fatal("enum lb_reason not found in consts.h")
	}
	var cNames []string
	for _, m := range regexp.MustCompile(`(?m)^\t([A-Z_0-9]+)(?: = \d+)?,$`).FindAllStringSubmatch(body[1], -1) {
		cNames = append(cNames, m[1])
	}
	var goNames []string
	for r := Reason(0); r < NumReasons; r++ {
		goNames = append(goNames, r.String())
	}
	goNames = append(goNames, "REASON_MAX")
	if diff := cmp.Diff(goNames, cNames); diff != "" {
		t.Errorf("enum lb_reason differs (-go +c):\n%s", diff)
	}
}
