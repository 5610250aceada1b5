package xenapi

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ParseDateTime reads a XenAPI datetime as xapi and its SDKs write it:
// the date as 20240115 or 2024-01-15, "T", the time as 10:20:30 or 102030
// with optional fractional seconds, and an optional zone (Z, +03, +0300,
// +03:00; none means UTC). xapi writes "19700101T00:00:00Z" for an unset
// time; that is returned as is (the Unix epoch).
func ParseDateTime(s string) (time.Time, error) {
	bad := fmt.Errorf("%.60q is not a XenAPI datetime (like 20240115T10:20:30Z)", s)
	date, clock, ok := strings.Cut(s, "T")
	if !ok {
		return time.Time{}, bad
	}
	date = strings.ReplaceAll(date, "-", "")
	if len(date) != 8 {
		return time.Time{}, bad
	}
	zone := "Z"
	if k := strings.IndexAny(clock, "Z+-"); k >= 0 {
		clock, zone = clock[:k], clock[k:]
	}
	frac := ""
	if k := strings.IndexByte(clock, '.'); k >= 0 {
		clock, frac = clock[:k], clock[k:]
	}
	clock = strings.ReplaceAll(clock, ":", "")
	zone, zok := normalZone(zone)
	if len(clock) != 6 || !zok || len(frac) == 1 {
		return time.Time{}, bad
	}
	norm := date[:4] + "-" + date[4:6] + "-" + date[6:] + "T" + clock[:2] + ":" + clock[2:4] + ":" + clock[4:] + frac + zone
	t, err := time.Parse(time.RFC3339Nano, norm)
	if err != nil {
		return time.Time{}, bad
	}
	return t.UTC(), nil
}

// normalZone turns Z, +03, +0300 and +03:00 into RFC 3339's Z or +03:00.
func normalZone(z string) (string, bool) {
	if z == "Z" {
		return z, true
	}
	digits := strings.ReplaceAll(z[1:], ":", "")
	switch len(digits) {
	case 2:
		return z[:1] + digits + ":00", true
	case 4:
		return z[:1] + digits[:2] + ":" + digits[2:], true
	}
	return "", false
}

// validRef reports whether r looks like "OpaqueRef:<uuid>" (or NullRef).
func validRef(r Ref) bool {
	tail, ok := strings.CutPrefix(string(r), "OpaqueRef:")
	if !ok || tail == "" || len(tail) > 64 {
		return false
	}
	for _, c := range tail {
		if !(c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return false
		}
	}
	return true
}

// ValidUUID reports whether s is a UUID in the 8-4-4-4-12 hex form.
func ValidUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
				return false
			}
		}
	}
	return true
}

func checkRef(what string, r Ref) error {
	if !validRef(r) {
		return fmt.Errorf("xenapi: %s: %.80q is not a XenAPI reference (OpaqueRef:<uuid>)", what, string(r))
	}
	return nil
}

var (
	timeType = reflect.TypeOf(time.Time{})
	refType  = reflect.TypeOf(Ref(""))
)

// decodeRecord fills the struct dst points to from a XenAPI struct value,
// field by field by json tag. Fields the server omits keep their zero value;
// fields it adds are ignored; a field of the wrong shape is an error naming
// the method and the field.
func decodeRecord(method string, raw json.RawMessage, dst any) error {
	var fields map[string]json.RawMessage
	if err := unmarshal(raw, &fields); err != nil || fields == nil {
		return fmt.Errorf("xenapi: %s: the host returned %s where a record was expected", method, describe(raw))
	}
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		fraw, ok := fields[name]
		if !ok || name == "" {
			continue
		}
		if err := decodeValue(fraw, v.Field(i)); err != nil {
			return fmt.Errorf("xenapi: %s: field %s: %w", method, name, err)
		}
		if name == "uuid" && v.Field(i).String() != "" && !ValidUUID(v.Field(i).String()) {
			return fmt.Errorf("xenapi: %s: field uuid: %s is not a UUID", method, describe(fraw))
		}
	}
	return nil
}

// decodeValue decodes one field value into f.
func decodeValue(raw json.RawMessage, f reflect.Value) error {
	switch {
	case f.Type() == timeType:
		return decodeTime(raw, f)
	case f.Type() == refType:
		return decodeRef(raw, f)
	}
	switch f.Kind() {
	case reflect.String:
		return decodeString(raw, f)
	case reflect.Bool:
		var b bool
		if err := unmarshal(raw, &b); err != nil {
			return fmt.Errorf("want a boolean, got %s", describe(raw))
		}
		f.SetBool(b)
		return nil
	case reflect.Int64:
		n, err := decodeInt(raw)
		if err != nil {
			return err
		}
		f.SetInt(n)
		return nil
	case reflect.Float64:
		x, err := decodeFloat(raw)
		if err != nil {
			return err
		}
		f.SetFloat(x)
		return nil
	case reflect.Slice:
		return decodeSlice(raw, f)
	case reflect.Map:
		return decodeMap(raw, f)
	}
	return fmt.Errorf("no decoder for Go type %s", f.Type())
}

func decodeString(raw json.RawMessage, f reflect.Value) error {
	var s string
	if err := unmarshal(raw, &s); err != nil {
		return fmt.Errorf("want a string, got %s", describe(raw))
	}
	f.SetString(s)
	return nil
}

func decodeRef(raw json.RawMessage, f reflect.Value) error {
	var s string
	if err := unmarshal(raw, &s); err != nil || !validRef(Ref(s)) {
		return fmt.Errorf("want a reference (OpaqueRef:<uuid>), got %s", describe(raw))
	}
	f.SetString(s)
	return nil
}

func decodeTime(raw json.RawMessage, f reflect.Value) error {
	var s string
	if err := unmarshal(raw, &s); err != nil {
		return fmt.Errorf("want a datetime string, got %s", describe(raw))
	}
	t, err := ParseDateTime(s)
	if err != nil {
		return err
	}
	f.Set(reflect.ValueOf(t))
	return nil
}

// decodeInt reads a 64-bit integer, as a JSON number or a decimal string
// (XML-RPC's encoding of int64).
func decodeInt(raw json.RawMessage) (int64, error) {
	var n json.Number
	if err := unmarshal(raw, &n); err == nil {
		if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
			return i, nil
		}
	}
	return 0, fmt.Errorf("want a 64-bit integer, got %s", describe(raw))
}

// decodeFloat reads a float, as a JSON number, a decimal string, or NaN and
// the infinities (written bare by xapi and quoted by unmarshal).
func decodeFloat(raw json.RawMessage) (float64, error) {
	var text string
	var n json.Number
	switch {
	case unmarshal(raw, &n) == nil:
		text = n.String()
	case unmarshal(raw, &text) == nil:
	default:
		return 0, fmt.Errorf("want a number, got %s", describe(raw))
	}
	switch text {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	x, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, fmt.Errorf("want a number, got %s", describe(raw))
	}
	return x, nil
}

func decodeSlice(raw json.RawMessage, f reflect.Value) error {
	var items []json.RawMessage
	if err := unmarshal(raw, &items); err != nil {
		return fmt.Errorf("want an array, got %s", describe(raw))
	}
	out := reflect.MakeSlice(f.Type(), len(items), len(items))
	for i, it := range items {
		if err := decodeValue(it, out.Index(i)); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	f.Set(out)
	return nil
}

func decodeMap(raw json.RawMessage, f reflect.Value) error {
	var items map[string]json.RawMessage
	if err := unmarshal(raw, &items); err != nil {
		return fmt.Errorf("want an object, got %s", describe(raw))
	}
	out := reflect.MakeMapWithSize(f.Type(), len(items))
	for k, it := range items {
		ev := reflect.New(f.Type().Elem()).Elem()
		if err := decodeValue(it, ev); err != nil {
			return fmt.Errorf("key %.60q: %w", k, err)
		}
		out.SetMapIndex(reflect.ValueOf(k).Convert(f.Type().Key()), ev)
	}
	f.Set(out)
	return nil
}

// describe names the JSON type of raw for an error, without quoting much of
// the value (it may be large, or a secret).
func describe(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "nothing"
	}
	switch s[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		var v string
		if json.Unmarshal(raw, &v) != nil || len(v) > 40 {
			return "a string"
		}
		if strings.Contains(v, "OpaqueRef:") {
			return "a reference string"
		}
		return "the string " + strconv.QuoteToASCII(v)
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if len(s) > 24 {
		return "a number"
	}
	return "the number " + s
}
