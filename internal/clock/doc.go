// Package clock owns the one time source of Coffer: everything that decides
// by the time of day (snapshot and slot times, retention, RPO, expiries,
// retry waits, bandwidth windows, grace periods) reads a Clock handed to it,
// so tests can move time. Measuring how long work took stays on the
// monotonic clock (time.Since) and is not a decision. Its test double is
// clocktest.
package clock
