package xapisim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxRequestBody bounds a JSON-RPC request.
const maxRequestBody = 1 << 20

// rpcRequest is a decoded JSON-RPC call.
type rpcRequest struct {
	v2     bool
	method string
	params []any
	id     any // json.Number or string
}

// decodeRequest parses a JSON-RPC request body (version 2.0 with a
// "jsonrpc" member, 1.0 without). Anything malformed is an error, which
// the handler answers with HTTP 500 as xapi does.
func decodeRequest(body []byte) (*rpcRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("request is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("data after the request object")
	}
	req := &rpcRequest{}
	if v, ok := raw["jsonrpc"]; ok {
		if v != "2.0" {
			return nil, fmt.Errorf("jsonrpc %v: want \"2.0\"", v)
		}
		req.v2 = true
	}
	m, ok := raw["method"].(string)
	if !ok || m == "" {
		return nil, errors.New("method missing or not a string")
	}
	req.method = m
	switch p := raw["params"].(type) {
	case []any:
		req.params = p
	case nil:
		if _, present := raw["params"]; present {
			return nil, errors.New("params is null")
		}
		req.params = []any{}
	default:
		return nil, errors.New("params is not an array")
	}
	switch id := raw["id"].(type) {
	case string:
		req.id = id
	case json.Number:
		if _, err := id.Int64(); err != nil {
			return nil, fmt.Errorf("id %s is not an integer", id)
		}
		req.id = id
	default:
		return nil, errors.New("id missing, null or neither an integer nor a string (notifications are not served)")
	}
	return req, nil
}

// encodeResponse is the JSON-RPC answer: a result, or an *APIError.
func encodeResponse(req *rpcRequest, result any, err error) ([]byte, error) {
	var ae *APIError
	if err != nil && !errors.As(err, &ae) {
		ae = apiErr(errInternal, err.Error())
	}
	if req.v2 {
		if ae != nil {
			return json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.id,
				"error": map[string]any{"code": 1, "message": ae.Code, "data": ae.Params}})
		}
		return json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.id, "result": result})
	}
	if ae != nil {
		return json.Marshal(map[string]any{"id": req.id, "result": nil, "error": append([]string{ae.Code}, ae.Params...)})
	}
	return json.Marshal(map[string]any{"id": req.id, "result": result, "error": nil})
}

// serveJSONRPC is the POST /jsonrpc handler.
func (h *Handler) serveJSONRPC(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "JSON-RPC wants POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil || len(body) > maxRequestBody {
		http.Error(w, "request body unreadable or too large", http.StatusInternalServerError)
		return
	}
	req, err := decodeRequest(body)
	if err != nil {
		h.logf("xapisim: malformed JSON-RPC request: %v", err)
		http.Error(w, "malformed JSON-RPC request: "+err.Error(), http.StatusInternalServerError)
		return
	}
	result, callErr := h.call(req.method, req.params)
	out, err := encodeResponse(req, result, callErr)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	var ae *APIError
	if callErr != nil && !errors.As(callErr, &ae) {
		h.logf("xapisim: %s: %v", req.method, callErr)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// splitMethod splits "Async.VDI.destroy" into async, class and name.
func splitMethod(m string) (async bool, class, name string) {
	if rest, ok := strings.CutPrefix(m, "Async."); ok {
		async, m = true, rest
	}
	class, name, _ = strings.Cut(m, ".")
	return async, class, name
}
