package xenapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// XenAPI error codes Coffer reacts to (xapi's Api_errors).
const (
	ErrSessionInvalid         = "SESSION_INVALID"
	ErrHostIsSlave            = "HOST_IS_SLAVE"
	ErrHandleInvalid          = "HANDLE_INVALID"
	ErrUUIDInvalid            = "UUID_INVALID"
	ErrVDIInUse               = "VDI_IN_USE"
	ErrVDINoCBTMetadata       = "VDI_NO_CBT_METADATA"
	ErrVDIIncompatibleType    = "VDI_INCOMPATIBLE_TYPE"
	ErrOperationNotAllowed    = "OPERATION_NOT_ALLOWED"
	ErrMethodUnknown          = "MESSAGE_METHOD_UNKNOWN"
	ErrParameterCountMismatch = "MESSAGE_PARAMETER_COUNT_MISMATCH"
	ErrLicenceRestriction     = "LICENCE_RESTRICTION"
	ErrOperationBlocked       = "OPERATION_BLOCKED"
	ErrAuthFailed             = "SESSION_AUTHENTICATION_FAILED"
)

// Error is an error the XenAPI returned: its code and parameters, and the
// method that got it. This client's session reference is replaced by
// "(session)" wherever it appears in a parameter before the Error is made.
type Error struct {
	Method string
	Code   string
	Params []string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("xenapi: %s failed: %s", e.Method, e.Code)
	if len(e.Params) > 0 {
		s += " " + strings.Join(quoteAll(e.Params), " ")
	}
	return s
}

func quoteAll(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Quote(p)
	}
	return out
}

// IsCode reports whether err is, or wraps, a XenAPI *Error with this code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// redactParams replaces secret by "(session)" wherever it appears in the
// parameters (a parameter may be the session or quote it).
func redactParams(ps []string, secret string) []string {
	if secret == "" {
		return ps
	}
	for i, p := range ps {
		ps[i] = strings.ReplaceAll(p, secret, "(session)")
	}
	return ps
}

// rpcRequest is one JSON-RPC 2.0 call.
type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
	ID      int64  `json:"id"`
}

// rpcResponse is a JSON-RPC 2.0 or 1.0 answer; Error is an object in 2.0
// and an array [code, params...] in 1.0.
type rpcResponse struct {
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	ID     json.RawMessage `json:"id"`
}

type rpcErrorV2 struct {
	Code    json.Number       `json:"code"`
	Message string            `json:"message"`
	Data    []json.RawMessage `json:"data"`
}

// decodeResponse decodes the body of a JSON-RPC answer to method's call
// number id: the result, or the XenAPI error as *Error.
func decodeResponse(method string, id int64, body []byte) (json.RawMessage, error) {
	var resp rpcResponse
	if err := unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("xenapi: %s: the host's answer is not a JSON-RPC response: %w", method, err)
	}
	if !idMatches(resp.ID, id) {
		return nil, fmt.Errorf("xenapi: %s: the host answered with id %.40q, want %d", method, resp.ID, id)
	}
	if e := bytes.TrimSpace(resp.Error); len(e) > 0 && !bytes.Equal(e, []byte("null")) {
		return nil, decodeRPCError(method, e)
	}
	r := bytes.TrimSpace(resp.Result)
	if len(r) == 0 {
		return nil, fmt.Errorf("xenapi: %s: the host's answer has neither result nor error", method)
	}
	return r, nil
}

func idMatches(raw json.RawMessage, id int64) bool {
	var n json.Number
	if err := unmarshal(raw, &n); err == nil {
		return n.String() == strconv.FormatInt(id, 10)
	}
	var s string
	return unmarshal(raw, &s) == nil && s == strconv.FormatInt(id, 10)
}

// decodeRPCError reads a v2 error object or a v1 error array.
func decodeRPCError(method string, raw []byte) error {
	var parts []json.RawMessage
	if raw[0] == '{' {
		var e rpcErrorV2
		if err := unmarshal(raw, &e); err != nil {
			return fmt.Errorf("xenapi: %s: the host's error object is malformed: %w", method, err)
		}
		parts = append([]json.RawMessage{quoteRaw(e.Message)}, e.Data...)
	} else if err := unmarshal(raw, &parts); err != nil {
		return fmt.Errorf("xenapi: %s: the host's error is neither an object nor an array: %w", method, err)
	}
	if len(parts) == 0 {
		return fmt.Errorf("xenapi: %s: the host returned an empty error", method)
	}
	strs := make([]string, len(parts))
	for i, p := range parts {
		strs[i] = rawString(p)
	}
	if strs[0] == "" {
		return fmt.Errorf("xenapi: %s: the host returned an error without a code", method)
	}
	return &Error{Method: method, Code: strs[0], Params: strs[1:]}
}

func quoteRaw(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// rawString is a JSON string's value, or the JSON text of any other value.
func rawString(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}

// unmarshal decodes JSON with exact numbers (UseNumber) after replacing the
// bare NaN and Infinity xapi may write for floats by strings.
func unmarshal(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(quoteNonFinite(data)))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// quoteNonFinite turns the bare tokens NaN, Infinity and -Infinity outside
// JSON strings into the strings "NaN", "Infinity" and "-Infinity"; data
// without them is returned as is.
func quoteNonFinite(data []byte) []byte {
	if !bytes.Contains(data, []byte("NaN")) && !bytes.Contains(data, []byte("Infinity")) {
		return data
	}
	out := make([]byte, 0, len(data)+16)
	inString, escaped := false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			out = append(out, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		if c == '"' {
			inString = true
			out = append(out, c)
			continue
		}
		if tok := nonFiniteAt(data[i:]); tok != "" {
			out = append(out, '"')
			out = append(out, tok...)
			out = append(out, '"')
			i += len(tok) - 1
			continue
		}
		out = append(out, c)
	}
	return out
}

func nonFiniteAt(b []byte) string {
	for _, tok := range []string{"NaN", "Infinity", "-Infinity"} {
		if bytes.HasPrefix(b, []byte(tok)) {
			return tok
		}
	}
	return ""
}
