package config

import (
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"time"
	"unicode"
)

// JSONSchemaVersion names the layout JSON produces; it changes only when a key is renamed or
// removed or a value changes type (adding keys does not change it).
const JSONSchemaVersion = "sluice.config/v1"

// JSON renders the fully resolved configuration (defaults applied, parameters and sequences
// expanded, inherited settings resolved) as indented JSON, as documented in docs/config.md:
//
//	{"schema": "sluice.config/v1", "config": {...}}
//
// Keys are the Go field names in snake_case (RouterID is router_id); every key is always
// present (null or [] when unset); durations are seconds as numbers; addresses and prefixes are
// strings ("" when unset); positions are "file:line:col" strings; byte strings are hex.
func (c *Config) JSON() ([]byte, error) {
	doc := map[string]any{"schema": JSONSchemaVersion, "config": jsonValue(reflect.ValueOf(*c))}
	return json.MarshalIndent(doc, "", "  ")
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	posType      = reflect.TypeFor[Pos]()
	bytesType    = reflect.TypeFor[[]byte]()
)

func jsonValue(v reflect.Value) any {
	switch v.Type() {
	case durationType:
		return time.Duration(v.Int()).Seconds()
	case addrType:
		a := v.Interface().(netip.Addr)
		if !a.IsValid() {
			return ""
		}
		return a.String()
	case prefixType:
		p := v.Interface().(netip.Prefix)
		if !p.IsValid() {
			return ""
		}
		return p.String()
	case posType:
		return v.Interface().(Pos).String()
	case bytesType:
		if v.IsNil() {
			return nil
		}
		return hex.EncodeToString(v.Bytes())
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return jsonValue(v.Elem())
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonValue(v.Index(i))
		}
		return out
	case reflect.Struct:
		out := make(map[string]any, v.NumField())
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			out[jsonKey(f.Name)] = jsonValue(v.Field(i))
		}
		return out
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	}
	return v.Interface()
}

// jsonKeys are the field names snake_case would split badly, and keepalived keyword spellings.
var jsonKeys = map[string]string{
	"VIPs": "vips", "ExcludedVIPs": "excluded_vips", "URLs": "urls", "FWMark": "fwmark",
	"FWMarkFamily": "fwmark_family", "UThreshold": "uthreshold", "LThreshold": "lthreshold",
	"BindTo": "bindto", "Msg": "message", "TrackBFDs": "track_bfds", "NoPreempt": "nopreempt",
	"VRRPGARPInterval": "vrrp_garp_interval", "VRRPGARPMasterDelay": "vrrp_garp_master_delay",
	"VRRPGARPMasterRefresh": "vrrp_garp_master_refresh", "VRRPGARPMasterRepeat": "vrrp_garp_master_repeat",
	"VRRPGNAInterval": "vrrp_gna_interval",
}

// jsonKey converts a Go field name to snake_case: RouterID is router_id, GARPMasterDelay is
// garp_master_delay, VRRPMcastGroup4 is vrrp_mcast_group4.
func jsonKey(name string) string {
	if k, ok := jsonKeys[name]; ok {
		return k
	}
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || unicode.IsUpper(r[i-1]) && nextLower {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
