package xenapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeResponse(t *testing.T) {
	cases := []struct {
		name, body string
		want       string // result JSON, when no error
		code       string // XenAPI code, when *Error
		params     []string
		errHas     string // other error
	}{
		{name: "v2 result", body: `{"jsonrpc":"2.0","result":"OpaqueRef:a","id":7}`, want: `"OpaqueRef:a"`},
		{name: "v2 void", body: `{"jsonrpc":"2.0","result":"","id":7}`, want: `""`},
		{name: "string id", body: `{"jsonrpc":"2.0","result":1,"id":"7"}`, want: `1`},
		{name: "v2 error", body: `{"jsonrpc":"2.0","error":{"code":1,"message":"HANDLE_INVALID","data":["VM","OpaqueRef:x"]},"id":7}`,
			code: ErrHandleInvalid, params: []string{"VM", "OpaqueRef:x"}},
		{name: "v2 error no data", body: `{"jsonrpc":"2.0","error":{"code":1,"message":"SESSION_AUTHENTICATION_FAILED"},"id":7}`,
			code: ErrAuthFailed, params: []string{}},
		{name: "v2 error non-string data", body: `{"jsonrpc":"2.0","error":{"code":1,"message":"MESSAGE_PARAMETER_COUNT_MISMATCH","data":["VM.snapshot",2,1]},"id":7}`,
			code: ErrParameterCountMismatch, params: []string{"VM.snapshot", "2", "1"}},
		{name: "v1 error", body: `{"result":null,"error":["HOST_IS_SLAVE","10.0.0.1"],"id":7}`, code: ErrHostIsSlave, params: []string{"10.0.0.1"}},
		{name: "v1 success", body: `{"result":["OpaqueRef:a"],"error":null,"id":7}`, want: `["OpaqueRef:a"]`},
		{name: "bare NaN", body: `{"jsonrpc":"2.0","result":{"a":NaN,"b":-Infinity,"c":"NaN in text"},"id":7}`,
			want: `{"a":"NaN","b":"-Infinity","c":"NaN in text"}`},
		{name: "wrong id", body: `{"jsonrpc":"2.0","result":"","id":8}`, errHas: "id"},
		{name: "no id", body: `{"jsonrpc":"2.0","result":""}`, errHas: "id"},
		{name: "not json", body: `<html>502 Bad Gateway</html>`, errHas: "not a JSON-RPC response"},
		{name: "empty", body: ``, errHas: "not a JSON-RPC response"},
		{name: "trailing", body: `{"jsonrpc":"2.0","result":"","id":7} {}`, errHas: "not a JSON-RPC response"},
		{name: "neither", body: `{"jsonrpc":"2.0","id":7}`, errHas: "neither result nor error"},
		{name: "empty error array", body: `{"error":[],"id":7}`, errHas: "empty error"},
		{name: "error string", body: `{"error":"boom","id":7}`, errHas: "neither an object nor an array"},
		{name: "error without code", body: `{"jsonrpc":"2.0","error":{"code":1,"message":""},"id":7}`, errHas: "without a code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := decodeResponse("VM.get_record", 7, []byte(c.body))
			var xe *Error
			switch {
			case c.code != "":
				if !errors.As(err, &xe) || xe.Code != c.code || strings.Join(xe.Params, "|") != strings.Join(c.params, "|") || xe.Method != "VM.get_record" {
					t.Fatalf("err = %#v, want code %s params %q", err, c.code, c.params)
				}
			case c.errHas != "":
				if err == nil || errors.As(err, &xe) || !strings.Contains(err.Error(), c.errHas) || !strings.Contains(err.Error(), "VM.get_record") {
					t.Fatalf("err = %v, want one naming the method and %q", err, c.errHas)
				}
			default:
				if err != nil || string(res) != c.want {
					t.Fatalf("got %s, %v; want %s", res, err, c.want)
				}
			}
		})
	}
}

func TestQuoteNonFinite(t *testing.T) {
	cases := map[string]string{
		`[1,2]`:                       `[1,2]`,
		`[NaN, Infinity,-Infinity]`:   `["NaN", "Infinity","-Infinity"]`,
		`{"NaN":"x\"NaN\\","y":NaN}`:  `{"NaN":"x\"NaN\\","y":"NaN"}`,
		`"Infinity"`:                  `"Infinity"`,
		`{"a":"\\\\"  ,"b":Infinity}`: `{"a":"\\\\"  ,"b":"Infinity"}`,
	}
	for in, want := range cases {
		if got := string(quoteNonFinite([]byte(in))); got != want {
			t.Errorf("quoteNonFinite(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Method: "VDI.enable_cbt", Code: ErrVDIIncompatibleType, Params: []string{"OpaqueRef:v", "iso"}}
	got := e.Error()
	for _, want := range []string{"VDI.enable_cbt", ErrVDIIncompatibleType, `"iso"`, `"OpaqueRef:v"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	wrapped := errors.Join(errors.New("outer"), e)
	if !IsCode(wrapped, ErrVDIIncompatibleType) || IsCode(wrapped, ErrVDIInUse) || IsCode(errors.New(ErrVDIIncompatibleType), ErrVDIIncompatibleType) {
		t.Error("IsCode does not look through wrapping, or matches what it should not")
	}
	ps := redactParams([]string{"a", string(testSession)}, string(testSession))
	if ps[1] != "(session)" || ps[0] != "a" {
		t.Errorf("redactParams = %q", ps)
	}
}

// FuzzDecodeResponse: any body gives a result or an error, never a panic;
// a result is valid JSON once NaN and the infinities are quoted; a XenAPI
// error always has a code and the method.
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","result":"OpaqueRef:a","id":1}`,
		`{"jsonrpc":"2.0","error":{"code":1,"message":"HANDLE_INVALID","data":["VM","OpaqueRef:x"]},"id":1}`,
		`{"result":null,"error":["HOST_IS_SLAVE","10.0.0.1"],"id":1}`,
		`{"jsonrpc":"2.0","result":{"OpaqueRef:a":{"p":NaN,"q":Infinity,"r":-Infinity,"s":"NaN"}},"id":1}`,
		`{"error":[1,{"a":[]}],"id":"1"}`,
		`{"jsonrpc":"2.0","result":"\"Na`, `[`, `NaN`, `{"id":1,"result":-Infinity}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := decodeResponse("m.x", 1, body)
		if err != nil {
			var xe *Error
			if errors.As(err, &xe) && (xe.Code == "" || xe.Method != "m.x") {
				t.Fatalf("XenAPI error without code or method: %#v", xe)
			}
			if res != nil {
				t.Fatal("result and error")
			}
			return
		}
		if !json.Valid(res) {
			t.Fatalf("result %q is not valid JSON", res)
		}
	})
}
