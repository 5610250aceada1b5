// Package composetest checks the vault's deployment files without a Docker
// engine or systemd: docker-compose.yml (loaded with the compose-spec
// parser, github.com/compose-spec/compose-go/v2), deploy/Dockerfile, and
// deploy/cofferd.service (parsed as a unit file, and given to
// `systemd-analyze verify` when that exists).
//
// It is a module of its own so that the compose parser's dependency tree
// stays out of the main module's go.mod. `make test-deploy` runs it, and
// `make test` runs that target. Where cmd/cofferd exists, the tests build it
// and check that every flag the deployment files pass is one `cofferd` knows.
package composetest
