package xapisim

import "strings"

// APIError is a XenAPI error: a code such as HANDLE_INVALID and its
// parameters, as xapi sends them.
type APIError struct {
	Code   string
	Params []string
}

func (e *APIError) Error() string {
	if len(e.Params) == 0 {
		return e.Code
	}
	return e.Code + " [" + strings.Join(e.Params, ", ") + "]"
}

func apiErr(code string, params ...string) *APIError {
	if params == nil {
		params = []string{}
	}
	return &APIError{Code: code, Params: params}
}

// XenAPI error codes the simulator sends.
const (
	errSessionInvalid      = "SESSION_INVALID"
	errAuthFailed          = "SESSION_AUTHENTICATION_FAILED"
	errHandleInvalid       = "HANDLE_INVALID"
	errUUIDInvalid         = "UUID_INVALID"
	errParamCount          = "MESSAGE_PARAMETER_COUNT_MISMATCH"
	errMethodUnknown       = "MESSAGE_METHOD_UNKNOWN"
	errFieldType           = "FIELD_TYPE_ERROR"
	errVDIInUse            = "VDI_IN_USE"
	errNoCBTMetadata       = "VDI_NO_CBT_METADATA"
	errIncompatibleType    = "VDI_INCOMPATIBLE_TYPE"
	errNotAllowed          = "OPERATION_NOT_ALLOWED"
	errBadPowerState       = "VM_BAD_POWER_STATE"
	errLicence             = "LICENCE_RESTRICTION"
	errSROpNotSupported    = "SR_OPERATION_NOT_SUPPORTED"
	errVBDNotUnpluggable   = "VBD_NOT_UNPLUGGABLE"
	errDeviceNotAttached   = "DEVICE_ALREADY_DETACHED"
	errDeviceAttached      = "DEVICE_ALREADY_ATTACHED"
	errTaskCancelled       = "TASK_CANCELLED"
	errOpBlocked           = "OPERATION_BLOCKED"
	errInvalidValue        = "INVALID_VALUE"
	errMapDuplicateKey     = "MAP_DUPLICATE_KEY"
	errInternal            = "INTERNAL_ERROR"
	errVDIIO               = "VDI_IO_ERROR"
	errImport              = "IMPORT_ERROR"
	errImportDisksMissing  = "IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND"
	errSnapshotBackend82   = "SR_BACKEND_FAILURE_82"
	errNoSpace             = "SR_BACKEND_FAILURE_44"
	errCBTBackend460       = "SR_BACKEND_FAILURE_460"
	cbtChangedBlocksFailed = "Failed to calculate changed blocks for given VDIs."
)

// lcbError is the storage backend's list_changed_blocks failure.
func lcbError(why string) *APIError {
	return apiErr(errCBTBackend460, "", cbtChangedBlocksFailed+" [opterr="+why+"]", "")
}
