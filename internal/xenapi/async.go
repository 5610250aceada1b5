package xenapi

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"
	"time"
)

// Task polling backoff: from pollMin, doubling, up to pollMax.
const (
	pollMin = 50 * time.Millisecond
	pollMax = 2 * time.Second
	// cleanupTimeout bounds task.cancel and task.destroy, which run even
	// when the caller's context has ended.
	cleanupTimeout = 10 * time.Second
)

// Async calls "Async."+method, waits for its task, and returns the task's
// result with its XML-RPC <value> wrapper removed. A failed task returns its
// error_info as *Error (Method is method). The task is destroyed afterwards.
// When ctx ends first, Async sends task.cancel and returns ctx.Err().
func (s *Session) Async(ctx context.Context, method string, params ...any) (string, error) {
	raw, err := s.Call(ctx, "Async."+method, params...)
	if err != nil {
		return "", err
	}
	task, err := refResult(method+" (task)", raw)
	if err != nil {
		return "", err
	}
	defer s.cleanup(func(c context.Context) { _, _ = s.Call(c, "task.destroy", string(task)) })
	status, err := s.waitTask(ctx, method, task)
	if err != nil {
		if ctx.Err() != nil {
			s.cleanup(func(c context.Context) { _, _ = s.Call(c, "task.cancel", string(task)) })
			return "", ctx.Err()
		}
		return "", err
	}
	frag, err := s.taskOutcome(ctx, method, task, status)
	if err != nil {
		return "", err
	}
	res, err := ParseTaskResult(frag)
	if err != nil {
		return "", fmt.Errorf("xenapi: %s: the task's result: %w", method, err)
	}
	return res, nil
}

// cleanup runs f with a fresh bounded context (the caller's may be over).
func (s *Session) cleanup(f func(context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	f(ctx)
}

// waitTask polls task.get_status until the task is no longer pending or
// cancelling, and returns that status.
func (s *Session) waitTask(ctx context.Context, method string, task Ref) (string, error) {
	wait := pollMin
	for {
		raw, err := s.Call(ctx, "task.get_status", string(task))
		if err != nil {
			return "", err
		}
		var status string
		if err := unmarshal(raw, &status); err != nil {
			return "", fmt.Errorf("xenapi: %s: task.get_status returned %s, not a status", method, describe(raw))
		}
		switch status {
		case "pending", "cancelling":
		case "success", "failure", "cancelled":
			return status, nil
		default:
			return "", fmt.Errorf("xenapi: %s: the task has the unknown status %.40q", method, status)
		}
		if err := s.clock.Sleep(ctx, wait); err != nil {
			return "", err
		}
		wait = min(2*wait, pollMax)
	}
}

// taskOutcome returns a finished task's result as the XML-RPC fragment the
// host stored, or its error_info as *Error.
func (s *Session) taskOutcome(ctx context.Context, method string, task Ref, status string) (string, error) {
	switch status {
	case "success":
		raw, err := s.Call(ctx, "task.get_result", string(task))
		if err != nil {
			return "", err
		}
		var frag string
		if err := unmarshal(raw, &frag); err != nil {
			return "", fmt.Errorf("xenapi: %s: task.get_result returned %s, not a string", method, describe(raw))
		}
		return frag, nil
	case "failure":
		raw, err := s.Call(ctx, "task.get_error_info", string(task))
		if err != nil {
			return "", err
		}
		var info []string
		if err := unmarshal(raw, &info); err != nil || len(info) == 0 || info[0] == "" {
			return "", fmt.Errorf("xenapi: %s: the task failed and its error_info is %s", method, describe(raw))
		}
		return "", &Error{Method: method, Code: info[0], Params: redactParams(info[1:], string(s.ref))}
	default:
		return "", fmt.Errorf("xenapi: %s: the task was cancelled on the host", method)
	}
}

func refResult(what string, raw json.RawMessage) (Ref, error) {
	var s string
	if err := unmarshal(raw, &s); err != nil || !validRef(Ref(s)) {
		return "", fmt.Errorf("xenapi: %s: the host returned %s where a reference was expected", what, describe(raw))
	}
	return Ref(s), nil
}

// xmlValue is an XML-RPC <value>: text, or text inside <string>.
type xmlValue struct {
	XMLName xml.Name  `xml:"value"`
	Text    string    `xml:",chardata"`
	String  *xmlText  `xml:"string"`
	Others  []xmlText `xml:",any"`
}

type xmlText struct {
	Text string `xml:",chardata"`
}

// ParseTaskResult removes the XML-RPC wrapper xapi puts around a task's
// result even over JSON-RPC: "<value>X</value>" and
// "<value><string>X</string></value>" give X (entities decoded); text that
// starts without "<" is returned as is; "" stays "". Other XML-RPC types
// (arrays, structs, ints) are an error: no call Coffer makes returns them.
func ParseTaskResult(s string) (string, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "", nil
	}
	if !strings.HasPrefix(t, "<") {
		return s, nil
	}
	var v xmlValue
	d := xml.NewDecoder(strings.NewReader(t))
	d.Strict = true
	if err := d.Decode(&v); err != nil {
		return "", fmt.Errorf("not an XML-RPC value: %v", err)
	}
	if _, err := d.Token(); err == nil {
		return "", fmt.Errorf("trailing data after the XML-RPC value")
	}
	switch {
	case len(v.Others) > 0:
		return "", fmt.Errorf("an XML-RPC value of a type other than string")
	case v.String != nil:
		if strings.TrimSpace(v.Text) != "" {
			return "", fmt.Errorf("an XML-RPC value with text around its <string>")
		}
		return v.String.Text, nil
	}
	return v.Text, nil
}
