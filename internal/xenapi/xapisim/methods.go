package xapisim

import (
	"html"
	"slices"
	"strings"
)

// methods are the methods beyond the generic getters (dispatch.go).
var methods map[string]*method

func init() {
	vm, vdi, vbd, task := refParam("vm", "VM"), refParam("vdi", "VDI"), refParam("vbd", "VBD"), refParam("task", "task")
	value := strParam("value")
	methods = map[string]*method{
		"session.login_with_password": {params: []param{strParam("uname"), strParam("pwd"), strParam("version"),
			strParam("originator")}, optional: 2, defaults: []any{"1.1", ""}, noSession: true, run: login},
		"session.logout":                    {run: logout},
		"VM.get_by_name_label":              {params: []param{strParam("label")}, run: vmByName},
		"VM.snapshot":                       {params: []param{vm, strParam("new_name"), {name: "ignore_vdis", kind: kStrings}}, optional: 1, defaults: []any{[]string{}}, async: true, run: vmSnapshot},
		"VM.destroy":                        {params: []param{vm}, async: true, run: func(c *call) (any, error) { return "", c.st.destroyVM(c.str(0)) }},
		"VM.add_tags":                       {params: []param{vm, value}, run: vmAddTag},
		"VM.remove_tags":                    {params: []param{vm, value}, run: vmRemoveTag},
		"VM.set_name_description":           {params: []param{vm, value}, run: vmSetDescription},
		"VM.add_to_other_config":            {params: []param{vm, strParam("key"), value}, run: vmAddOtherConfig},
		"VM.remove_from_other_config":       {params: []param{vm, strParam("key")}, run: vmRemoveOtherConfig},
		"VM.add_to_blocked_operations":      {params: []param{vm, strParam("key"), value}, run: vmBlock},
		"VM.remove_from_blocked_operations": {params: []param{vm, strParam("key")}, run: vmUnblock},
		"VDI.create":                        {params: []param{{name: "args", kind: kRecord}}, async: true, run: vdiCreate},
		"VBD.create":                        {params: []param{{name: "args", kind: kRecord}}, async: true, run: vbdCreate},
		"VBD.plug":                          {params: []param{vbd}, async: true, run: vbdPlug},
		"VBD.unplug":                        {params: []param{vbd}, async: true, run: vbdUnplug},
		"VBD.destroy":                       {params: []param{vbd}, async: true, run: vbdDestroy},
		"VDI.destroy":                       {params: []param{vdi}, async: true, run: func(c *call) (any, error) { return "", c.h.Sim.destroyVDI(c.st, c.str(0)) }},
		"VDI.data_destroy":                  {params: []param{vdi}, async: true, cbt: true, run: func(c *call) (any, error) { return "", c.h.Sim.dataDestroy(c.st, c.str(0)) }},
		"VDI.enable_cbt":                    {params: []param{vdi}, async: true, cbt: true, run: func(c *call) (any, error) { return "", c.h.Sim.enableCBT(c.st, c.str(0)) }},
		"VDI.disable_cbt":                   {params: []param{vdi}, async: true, cbt: true, run: func(c *call) (any, error) { return "", c.st.disableCBT(c.str(0)) }},
		"VDI.list_changed_blocks":           {params: []param{refParam("vdi_from", "VDI"), refParam("vdi_to", "VDI")}, async: true, cbt: true, run: func(c *call) (any, error) { return c.h.Sim.listChangedBlocks(c.st, c.str(0), c.str(1)) }},
		"VDI.get_nbd_info":                  {params: []param{vdi}, cbt: true, run: nbdInfo},
		"task.get_record":                   {params: []param{task}, run: taskPoll(func(c *call) any { return c.st.taskRecord(c.str(0)) })},
		"task.get_status":                   {params: []param{task}, run: taskPoll(func(c *call) any { return c.st.Tasks[c.str(0)].Status })},
		"task.get_progress":                 {params: []param{task}, run: taskPoll(func(c *call) any { return c.st.taskRecord(c.str(0))["progress"] })},
		"task.get_result":                   {params: []param{task}, run: func(c *call) (any, error) { return c.st.Tasks[c.str(0)].Result, nil }},
		"task.get_error_info":               {params: []param{task}, run: func(c *call) (any, error) { return orEmpty(c.st.Tasks[c.str(0)].ErrorInfo), nil }},
		"task.cancel":                       {params: []param{task}, async: true, run: taskCancel},
		"task.create":                       {params: []param{strParam("label"), strParam("description")}, run: taskCreate},
		"task.destroy":                      {params: []param{task}, run: func(c *call) (any, error) { delete(c.st.Tasks, c.str(0)); return "", nil }},
	}
}

func login(c *call) (any, error) {
	if c.str(0) != "root" || !c.st.Password.check(c.str(1)) {
		return nil, apiErr(errAuthFailed, c.str(0), "Authentication failure")
	}
	now := c.h.Sim.now()
	var mine []string
	for ref, s := range c.st.Sessions {
		if s.User == c.str(0) && s.Originator == c.str(3) {
			mine = append(mine, ref)
		}
	}
	if len(mine) >= sessionsPerUser { // xapi logs out the least recently used
		slices.SortFunc(mine, func(a, b string) int {
			return c.st.Sessions[a].LastActive.Compare(c.st.Sessions[b].LastActive)
		})
		delete(c.st.Sessions, mine[0])
	}
	u, ref := newRef()
	c.st.Sessions[ref] = &Session{UUID: u, User: c.str(0), Originator: c.str(3), LastActive: now}
	return ref, nil
}

func logout(c *call) (any, error) {
	delete(c.st.Sessions, c.session)
	return "", nil
}

func vmByName(c *call) (any, error) {
	out := []string{}
	for _, ref := range c.st.refsOf("VM") {
		if c.st.VMs[ref].NameLabel == c.str(0) {
			out = append(out, ref)
		}
	}
	return out, nil
}

func vmSnapshot(c *call) (any, error) {
	for _, v := range c.strs(2) {
		if c.st.VDIs[v] == nil {
			return nil, apiErr(errHandleInvalid, "VDI", v)
		}
	}
	return c.h.Sim.snapshotVM(c.st, c.str(0), c.str(1), c.strs(2))
}

func vmAddTag(c *call) (any, error) {
	vm := c.vm(0)
	if !slices.Contains(vm.Tags, c.str(1)) {
		vm.Tags = append(vm.Tags, c.str(1))
	}
	return "", nil
}

func vmRemoveTag(c *call) (any, error) {
	vm := c.vm(0)
	vm.Tags = slices.DeleteFunc(vm.Tags, func(t string) bool { return t == c.str(1) })
	return "", nil
}

func vmSetDescription(c *call) (any, error) {
	c.vm(0).NameDescription = c.str(1)
	return "", nil
}

func vmAddOtherConfig(c *call) (any, error) {
	vm := c.vm(0)
	if _, ok := vm.OtherConfig[c.str(1)]; ok {
		return nil, apiErr(errMapDuplicateKey, "VM", "other_config", c.str(0), c.str(1))
	}
	if vm.OtherConfig == nil {
		vm.OtherConfig = map[string]string{}
	}
	vm.OtherConfig[c.str(1)] = c.str(2)
	return "", nil
}

func vmRemoveOtherConfig(c *call) (any, error) {
	delete(c.vm(0).OtherConfig, c.str(1))
	return "", nil
}

func vmBlock(c *call) (any, error) {
	vm := c.vm(0)
	if _, ok := vm.BlockedOps[c.str(1)]; ok {
		return nil, apiErr(errMapDuplicateKey, "VM", "blocked_operations", c.str(0), c.str(1))
	}
	if vm.BlockedOps == nil {
		vm.BlockedOps = map[string]string{}
	}
	vm.BlockedOps[c.str(1)] = c.str(2)
	return "", nil
}

func vmUnblock(c *call) (any, error) {
	delete(c.vm(0).BlockedOps, c.str(1))
	return "", nil
}

func vbdUnplug(c *call) (any, error) {
	b := c.st.VBDs[c.str(0)]
	if !b.Attached {
		return nil, apiErr(errDeviceNotAttached, c.str(0))
	}
	b.Attached = false
	return "", nil
}

func vbdDestroy(c *call) (any, error) {
	if c.st.VBDs[c.str(0)].Attached {
		return nil, apiErr(errDeviceAttached, c.str(0))
	}
	delete(c.st.VBDs, c.str(0))
	return "", nil
}

// taskPoll wraps a task getter that counts as a poll (lcb-slow).
func taskPoll(get func(c *call) any) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		t := c.st.Tasks[c.str(0)]
		if t.Status == "pending" && !t.HTTP {
			if t.PendingPolls <= 0 {
				c.h.finishTask(t, t.LaterResult, t.LaterError)
			} else {
				t.PendingPolls--
			}
		}
		return get(c), nil
	}
}

func taskCancel(c *call) (any, error) {
	t := c.st.Tasks[c.str(0)]
	if t.Status == "pending" {
		c.h.finishTask(t, "", []string{errTaskCancelled, c.str(0)})
		t.Status = "cancelled"
	}
	return "", nil
}

// runAsync runs an Async. call at once and records its outcome in a new
// task; Async.VDI.list_changed_blocks stays pending for lcb-slow polls.
func (h *Handler) runAsync(c *call, m *method) (string, error) {
	u, ref := newRef()
	t := &Task{UUID: u, NameLabel: "Async." + strings.TrimPrefix(c.name, "Async."), Session: c.session,
		Status: "pending", Created: h.Sim.now()}
	c.st.Tasks[ref] = t
	res, err := m.checkAndRun(c)
	var result string
	var errInfo []string
	if err != nil {
		ae, ok := err.(*APIError)
		if !ok {
			return "", err // the simulator's own failure: nothing is saved
		}
		errInfo = append([]string{ae.Code}, ae.Params...)
	} else if s, ok := res.(string); ok && s != "" {
		result = "<value>" + html.EscapeString(s) + "</value>"
	}
	if n := c.st.switchCount(SwitchLCBSlow); n > 0 && strings.HasSuffix(c.name, "VDI.list_changed_blocks") {
		t.PendingPolls, t.LaterResult, t.LaterError = n, result, errInfo
		return ref, nil
	}
	h.finishTask(t, result, errInfo)
	return ref, nil
}

func (h *Handler) finishTask(t *Task, result string, errInfo []string) {
	t.Status, t.Result, t.ErrorInfo, t.Finished = "success", result, errInfo, h.Sim.now()
	t.LaterResult, t.LaterError, t.PendingPolls = "", nil, 0
	if errInfo != nil {
		t.Status, t.Result = "failure", ""
	}
}

// taskCreate is task.create: a pending task an HTTP handler finishes.
func taskCreate(c *call) (any, error) {
	u, ref := newRef()
	c.st.Tasks[ref] = &Task{UUID: u, NameLabel: c.str(0), Session: c.session, Status: "pending",
		Created: c.h.Sim.now(), HTTP: true}
	return ref, nil
}

// finishHTTPTask finishes a task.create task named by an HTTP handler's
// task_id: a result (a ref, or "") or an error.
func (h *Handler) finishHTTPTask(task, result string, errInfo []string) {
	if result != "" {
		result = "<value>" + html.EscapeString(result) + "</value>"
	}
	h.finishHTTPTaskWith(task, result, errInfo)
}

// finishHTTPTaskRaw finishes an HTTP task with a result that is an XML-RPC
// value already.
func (h *Handler) finishHTTPTaskRaw(task, value string) { h.finishHTTPTaskWith(task, value, nil) }

func (h *Handler) finishHTTPTaskWith(task, result string, errInfo []string) {
	if task == "" {
		return
	}
	err := h.Sim.Update(func(st *State) error {
		if t := st.Tasks[task]; t != nil && t.HTTP && t.Status == "pending" {
			h.finishTask(t, result, errInfo)
		}
		return nil
	})
	if err != nil {
		h.logf("xapisim: finishing task %s: %v", task, err)
	}
}
