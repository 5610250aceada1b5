package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
)

// driver knows the command line of one tool.
type driver interface {
	// env returns the tool's variables: repository, password, caches.
	env(b *bench, s *Session, password string) []string
	// setup returns the unmeasured commands that create the repository.
	setup(b *bench, s *Session, bin string) [][]string
	// backup returns the command that backs up the image at path under
	// the name (Coffer's --name; the others name it by its path).
	backup(s *Session, bin, path, name string) []string
	// parseBackup reads the backup's stdout: its summary and snapshot ID.
	parseBackup(stdout []byte) (map[string]any, string, error)
	// snapshots returns the command that lists the repository's snapshots:
	// a command that opens the repository and reads no data.
	snapshots(s *Session, bin string) []string
	// restore returns the command that restores the backup ref into
	// outDir, and the path of the restored image.
	restore(s *Session, bin string, ref backupRef, outDir string) ([]string, string)
}

// backupRef names what a backup stored: the image's path and name, and
// the snapshot ID the tool printed.
type backupRef struct {
	path, name, snapshot string
}

var drivers = map[string]driver{
	toolCoffer: cofferDriver{},
	toolRestic: resticDriver{},
	toolKopia:  kopiaDriver{},
}

// lastJSON returns the last line of out that is a JSON object for which
// match is true.
func lastJSON(out []byte, match func(map[string]any) bool) (map[string]any, bool) {
	lines := bytes.Split(out, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		line := bytes.TrimSpace(lines[i])
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && match(m) {
			return m, true
		}
	}
	return nil, false
}

// Coffer: the contract of PRODUCT.md's command line.
type cofferDriver struct{}

func (cofferDriver) config(s *Session) string { return filepath.Join(s.dir, "coffer.yaml") }

func (cofferDriver) env(_ *bench, _ *Session, password string) []string {
	return []string{"COFFER_PASSWORD=" + password}
}

func (d cofferDriver) setup(b *bench, s *Session, bin string) [][]string {
	repo := "file://" + s.repoDir
	switch s.Target {
	case targetS3:
		repo = fmt.Sprintf("s3://%s/%s/%s?tls=false", b.minio.Endpoint, b.minio.Bucket, s.s3Prefix[:len(s.s3Prefix)-1])
	case targetVault:
		repo = b.vault.URL // the enrollment token is in the session's environment
	}
	return [][]string{{bin, "--config", d.config(s), "init", "--repo", repo}}
}

func (d cofferDriver) backup(s *Session, bin, path, name string) []string {
	return []string{bin, "--config", d.config(s), "backup", "--image", path, "--name", name, "--json"}
}

func (cofferDriver) parseBackup(out []byte) (map[string]any, string, error) {
	m, ok := lastJSON(out, func(m map[string]any) bool { return m["type"] == "summary" })
	if !ok {
		return nil, "", errors.New(`coffer printed no {"type":"summary"} line`)
	}
	id, _ := m["snapshot_id"].(string)
	return m, id, nil
}

func (d cofferDriver) snapshots(s *Session, bin string) []string {
	return []string{bin, "--config", d.config(s), "snapshots"}
}

func (d cofferDriver) restore(s *Session, bin string, ref backupRef, outDir string) ([]string, string) {
	out := filepath.Join(outDir, "disk.img")
	return []string{bin, "--config", d.config(s), "restore", "latest", "--name", ref.name, "--to", out}, out
}

// restic, at the version of peers.env.
type resticDriver struct{}

func (resticDriver) env(b *bench, s *Session, password string) []string {
	repo := s.repoDir
	if s.Target == targetS3 {
		repo = fmt.Sprintf("s3:http://%s/%s/%s", b.minio.Endpoint, b.minio.Bucket, s.s3Prefix[:len(s.s3Prefix)-1])
	}
	return []string{"RESTIC_PASSWORD=" + password, "RESTIC_REPOSITORY=" + repo,
		"RESTIC_CACHE_DIR=" + filepath.Join(s.dir, "cache")}
}

func (resticDriver) setup(_ *bench, _ *Session, bin string) [][]string {
	return [][]string{{bin, "init"}}
}

func (resticDriver) backup(_ *Session, bin, path, _ string) []string {
	return []string{bin, "backup", "--compression", "auto", "--json", path}
}

func (resticDriver) parseBackup(out []byte) (map[string]any, string, error) {
	m, ok := lastJSON(out, func(m map[string]any) bool { return m["message_type"] == "summary" })
	if !ok {
		return nil, "", errors.New("restic printed no summary")
	}
	id, _ := m["snapshot_id"].(string)
	if id == "" {
		return m, "", errors.New("restic summary has no snapshot_id")
	}
	return m, id, nil
}

func (resticDriver) snapshots(_ *Session, bin string) []string {
	return []string{bin, "snapshots"}
}

func (resticDriver) restore(_ *Session, bin string, ref backupRef, outDir string) ([]string, string) {
	// restic restores a file under its full original path.
	return []string{bin, "restore", ref.snapshot, "--target", outDir, "--sparse"},
		filepath.Join(outDir, ref.path)
}

// kopia, at the version of peers.env.
type kopiaDriver struct{}

func (kopiaDriver) global(s *Session) []string {
	return []string{"--config-file", filepath.Join(s.dir, "kopia.config"), "--log-dir", filepath.Join(s.dir, "logs")}
}

func (kopiaDriver) env(_ *bench, _ *Session, password string) []string {
	return []string{"KOPIA_PASSWORD=" + password, "KOPIA_CHECK_FOR_UPDATES=false"}
}

func (d kopiaDriver) setup(b *bench, s *Session, bin string) [][]string {
	create := append([]string{bin, "repository", "create"}, d.global(s)...)
	if s.Target == targetS3 {
		create = append(create, "s3", "--endpoint", b.minio.Endpoint, "--disable-tls",
			"--bucket", b.minio.Bucket, "--prefix", s.s3Prefix)
	} else {
		create = append(create, "filesystem", "--path", s.repoDir)
	}
	create = append(create, "--cache-directory", filepath.Join(s.dir, "cache"))
	return [][]string{
		create,
		append(append([]string{bin, "policy", "set"}, d.global(s)...), "--global", "--compression", "zstd"),
		// restic runs no maintenance on its own; neither should kopia here.
		append(append([]string{bin, "maintenance", "set"}, d.global(s)...), "--enable-quick", "false", "--enable-full", "false"),
	}
}

func (d kopiaDriver) backup(s *Session, bin, path, _ string) []string {
	return append(append([]string{bin, "snapshot", "create"}, d.global(s)...), "--json", path)
}

func (kopiaDriver) parseBackup(out []byte) (map[string]any, string, error) {
	m, ok := lastJSON(out, func(m map[string]any) bool { _, ok := m["id"]; return ok })
	if !ok {
		return nil, "", errors.New("kopia printed no snapshot manifest")
	}
	id, _ := m["id"].(string)
	delete(m, "rootEntry")
	return m, id, nil
}

func (d kopiaDriver) snapshots(s *Session, bin string) []string {
	return append([]string{bin, "snapshot", "list"}, d.global(s)...)
}

func (d kopiaDriver) restore(s *Session, bin string, ref backupRef, outDir string) ([]string, string) {
	out := filepath.Join(outDir, "disk.img")
	return append(append([]string{bin, "snapshot", "restore"}, d.global(s)...), ref.snapshot, out, "--write-sparse-files"), out
}
