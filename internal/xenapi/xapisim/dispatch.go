package xapisim

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// kind is a parameter's wire type.
type kind int

const (
	kString kind = iota
	kRef
	kStrings
	kBool
	kInt
	kMap    // a struct or map of strings (record parameters)
	kRecord // a record: a struct whose fields the method checks
)

// param is one declared parameter (after the session).
type param struct {
	name  string
	kind  kind
	class string // for kRef: the class the ref must name
}

// method is one XenAPI method the simulator serves.
type method struct {
	params    []param
	optional  int  // trailing params that may be omitted
	noSession bool // session.login_with_password
	async     bool // has an Async. form
	cbt       bool // unknown to the old version (switch old-version)
	run       func(c *call) (any, error)
	defaults  []any // values of omitted optional params
}

// call is one method call being served, under the state lock.
type call struct {
	h       *Handler
	st      *State
	name    string
	session string
	args    []any
}

func (c *call) str(i int) string         { return c.args[i].(string) }
func (c *call) strs(i int) []string      { return c.args[i].([]string) }
func (c *call) vm(i int) *VM             { return c.st.VMs[c.str(i)] }
func (c *call) vdi(i int) *VDI           { return c.st.VDIs[c.str(i)] }
func (c *call) rec(i int) map[string]any { return c.args[i].(map[string]any) }
func refParam(name, class string) param  { return param{name: name, kind: kRef, class: class} }
func strParam(name string) param         { return param{name: name, kind: kString} }

// lookupMethod finds a method: the table first, then the generic getters
// every class has.
func (h *Handler) lookupMethod(st *State, class, name string) *method {
	if m, ok := methods[class+"."+name]; ok {
		return m
	}
	if !isClass(class) {
		return nil
	}
	return genericMethod(st, class, name)
}

func isClass(class string) bool {
	for _, c := range classes {
		if c == class {
			return true
		}
	}
	return false
}

// call serves one method call under the state lock. APIErrors are
// answers (the state is saved); other errors are the simulator's own.
func (h *Handler) call(fullName string, params []any) (any, error) {
	var result any
	var apiError error
	err := h.Sim.Update(func(st *State) error {
		h.expire(st)
		r, err := h.dispatch(st, fullName, params)
		var ae *APIError
		if errors.As(err, &ae) {
			apiError = ae
			return nil
		}
		result = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return result, apiError
}

func (h *Handler) dispatch(st *State, fullName string, params []any) (any, error) {
	async, class, name := splitMethod(fullName)
	m := h.lookupMethod(st, class, name)
	_, old := st.Switches[SwitchOldVersion]
	if m == nil || (async && !m.async) || (m.cbt && old) {
		return nil, apiErr(errMethodUnknown, fullName)
	}
	args, err := m.bind(fullName, params)
	if err != nil {
		return nil, err
	}
	c := &call{h: h, st: st, name: fullName}
	if !m.noSession {
		c.session = args[0].(string)
		args = args[1:]
		if err := h.checkSession(st, c.session); err != nil {
			return nil, err
		}
	}
	c.args = args
	if async {
		return h.runAsync(c, m)
	}
	return m.checkAndRun(c)
}

// checkAndRun checks the refs and runs the method.
func (m *method) checkAndRun(c *call) (any, error) {
	for i, p := range m.params {
		if p.kind == kRef && p.class != "" && c.st.recordOf(p.class, c.str(i)) == nil {
			return nil, apiErr(errHandleInvalid, p.class, c.str(i))
		}
	}
	return m.run(c)
}

// bind checks the parameter count and types, filling omitted optional
// parameters with their defaults.
func (m *method) bind(name string, params []any) ([]any, error) {
	decl := m.params
	if !m.noSession {
		decl = append([]param{{name: "session_id", kind: kRef}}, decl...)
	}
	if len(params) > len(decl) || len(params) < len(decl)-m.optional {
		return nil, apiErr(errParamCount, name, strconv.Itoa(len(decl)), strconv.Itoa(len(params)))
	}
	args := make([]any, len(decl))
	for i, p := range decl {
		if i >= len(params) {
			args[i] = m.defaults[i-(len(decl)-m.optional)]
			continue
		}
		v, ok := convert(p.kind, params[i])
		if !ok {
			return nil, apiErr(errFieldType, p.name)
		}
		args[i] = v
	}
	return args, nil
}

// convert checks a JSON value against a wire type.
func convert(k kind, v any) (any, bool) {
	switch k {
	case kString, kRef:
		s, ok := v.(string)
		return s, ok
	case kBool:
		b, ok := v.(bool)
		return b, ok
	case kInt:
		switch n := v.(type) {
		case json.Number:
			i, err := n.Int64()
			return i, err == nil
		case string:
			i, err := strconv.ParseInt(n, 10, 64)
			return i, err == nil
		}
	case kRecord:
		m, ok := v.(map[string]any)
		return m, ok
	case kStrings:
		list, ok := v.([]any)
		if !ok {
			return nil, false
		}
		out := make([]string, 0, len(list))
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// sessionIdle and taskKeep are xapi's lifetimes.
const (
	sessionIdle     = 24 * time.Hour
	taskKeep        = 3900 * time.Second
	sessionsPerUser = 500
)

// expire drops idle sessions and old finished tasks.
func (h *Handler) expire(st *State) {
	now := h.Sim.now()
	for ref, s := range st.Sessions {
		if now.Sub(s.LastActive) > sessionIdle {
			delete(st.Sessions, ref)
		}
	}
	for ref, t := range st.Tasks {
		if t.Status != "pending" && !t.Finished.IsZero() && now.Sub(t.Finished) > taskKeep {
			delete(st.Tasks, ref)
		}
	}
}

func (h *Handler) checkSession(st *State, ref string) error {
	s := st.Sessions[ref]
	if s == nil {
		return apiErr(errSessionInvalid, ref)
	}
	s.LastActive = h.Sim.now()
	return nil
}

// genericMethod builds get_record, get_all_records, get_all, get_by_uuid
// and the field getters (get_<field>) of a class.
func genericMethod(st *State, class, name string) *method {
	switch name {
	case "get_record":
		return &method{params: []param{refParam("self", class)}, run: func(c *call) (any, error) {
			return c.st.recordOf(class, c.str(0)), nil
		}}
	case "get_all":
		return &method{run: func(c *call) (any, error) { return orEmpty(c.st.refsOf(class)), nil }}
	case "get_all_records":
		return &method{run: func(c *call) (any, error) {
			out := map[string]record{}
			for _, ref := range c.st.refsOf(class) {
				out[ref] = c.st.recordOf(class, ref)
			}
			return out, nil
		}}
	case "get_by_uuid":
		return &method{params: []param{strParam("uuid")}, run: func(c *call) (any, error) {
			for _, ref := range c.st.refsOf(class) {
				if c.st.recordOf(class, ref)["uuid"] == c.str(0) {
					return ref, nil
				}
			}
			return nil, apiErr(errUUIDInvalid, class, c.str(0))
		}}
	}
	field, ok := strings.CutPrefix(name, "get_")
	if !ok || !hasField(st, class, field) {
		return nil
	}
	return &method{params: []param{refParam("self", class)}, cbt: field == "cbt_enabled", run: func(c *call) (any, error) {
		return c.st.recordOf(class, c.str(0))[field], nil
	}}
}

// hasField reports whether a class's records have a field.
func hasField(st *State, class, field string) bool {
	refs := st.refsOf(class)
	if len(refs) == 0 {
		return false
	}
	_, ok := st.recordOf(class, refs[0])[field]
	return ok
}
