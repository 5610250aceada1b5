// Package clocktest owns a manual clock.Clock for tests: time moves only
// when a test sleeps or advances it, so expiries are exact and instant.
package clocktest
