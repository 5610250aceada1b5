package registry

import (
	"context"
	"maps"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Limits of recovery point objectives.
const (
	// MaxRPO bounds a recovery point objective.
	MaxRPO = 365 * 24 * time.Hour
	// MaxVMRPOs bounds the VMs with an objective of their own per tenant
	// (the tenant document stays small; most VMs use the default).
	MaxVMRPOs = 100
)

// RPO is a tenant's recovery point objectives: how old the newest snapshot
// of a VM (a snapshot name) safely in the vault may be before cofferd
// status calls it late.
type RPO struct {
	// Default applies to every VM without an objective of its own; 0:
	// none.
	Default time.Duration `json:"default_ns,omitempty"`
	// PerVM are VMs' own objectives. A positive one also declares the VM
	// expected, so a VM whose agent never ran is reported absent; 0 is
	// an explicit none (a retired VM that the default no longer covers).
	PerVM map[string]time.Duration `json:"per_vm_ns,omitempty"`
}

// RPOFor is the objective of VM vm (0: none) and whether the VM has one of
// its own.
func (t *Tenant) RPOFor(vm string) (time.Duration, bool) {
	if t.RPO == nil {
		return 0, false
	}
	if d, ok := t.RPO.PerVM[vm]; ok {
		return d, true
	}
	return t.RPO.Default, false
}

// SetRPO sets the tenant's default recovery point objective (vm "") or VM
// vm's own; rpo 0 means none (for a VM: none even when the tenant has a
// default).
func (r *Registry) SetRPO(ctx context.Context, id, vm string, rpo time.Duration) (*Tenant, error) {
	if rpo < 0 || rpo > MaxRPO {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "a recovery point objective must be between 0 (none) and %v", MaxRPO)
	}
	return r.updateRPO(ctx, id, vm, func(o *RPO) error {
		if vm == "" {
			o.Default = rpo
			return nil
		}
		if _, ok := o.PerVM[vm]; !ok && len(o.PerVM) >= MaxVMRPOs {
			return vaultapi.Errorf(vaultapi.CodeBadRequest,
				"the tenant already has %d VMs with an objective of their own, the most it may: give the others the default, or clear a VM's (--vm VM default)", MaxVMRPOs)
		}
		o.PerVM[vm] = rpo
		return nil
	})
}

// ClearVMRPO removes VM vm's own objective, so the tenant's default
// applies to it again.
func (r *Registry) ClearVMRPO(ctx context.Context, id, vm string) (*Tenant, error) {
	return r.updateRPO(ctx, id, vm, func(o *RPO) error {
		delete(o.PerVM, vm)
		return nil
	})
}

// updateRPO applies fn to a copy of the tenant's objectives; objectives
// that say nothing are stored as none.
func (r *Registry) updateRPO(ctx context.Context, id, vm string, fn func(*RPO) error) (*Tenant, error) {
	if vm != "" {
		if err := vaultapi.ValidReceiptName(vm); err != nil {
			return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "VM %v", err)
		}
	}
	return r.UpdateTenant(ctx, id, func(t *Tenant) error {
		o := RPO{PerVM: map[string]time.Duration{}}
		if t.RPO != nil {
			o.Default = t.RPO.Default
			maps.Copy(o.PerVM, t.RPO.PerVM)
		}
		if err := fn(&o); err != nil {
			return err
		}
		switch {
		case t.RPO != nil && o.Default == t.RPO.Default && maps.Equal(o.PerVM, t.RPO.PerVM):
			// unchanged: the same pointer, so nothing is written
		case o.Default == 0 && len(o.PerVM) == 0:
			t.RPO = nil
		case len(o.PerVM) == 0:
			t.RPO = &RPO{Default: o.Default}
		default:
			t.RPO = &o
		}
		return nil
	})
}
