package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/diskread"
	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/internal/nbdexport"
)

// nbdOut is cofferd nbd's --json line once it serves.
type nbdOut struct {
	Type       string   `json:"type"`
	Tenant     string   `json:"tenant"`
	SnapshotID string   `json:"snapshot_id"`
	Name       string   `json:"name"`
	Listen     string   `json:"listen"`
	TLS        bool     `json:"tls"`
	Exports    []string `json:"exports"`
	URIs       []string `json:"uris"`
}

func newNBDCmd(g *globals) *cobra.Command {
	var tenant, name, listen, certFile, keyFile, escrowKey string
	var cacheMiB int64
	c := &cobra.Command{
		Use:   "nbd --tenant NAME SNAPSHOT|latest --listen ADDR --escrow-key FILE",
		Short: "Serve a tenant's snapshot read-only over NBD (instant access)",
		Long: `Serve every disk of a tenant's snapshot as a read-only NBD export named after
the disk (xvda, xvdb, ... for a VM; disk0 for an image), at once, whatever the
disks' size: chunks are fetched from the vault's store when a client reads
them, through a bounded cache with readahead, and block status tells clients
where the holes are. A hypervisor boots the VM from it, or qemu-img and
nbdcopy copy it (nbd://ADDR/xvda). The tenant's repository is opened
read-only with the escrow identity. With --tls-cert and --tls-key, clients
must use TLS (nbds://). It serves until interrupted.`,
		Args: oneSnapshot("nbd"),
		RunE: func(c *cobra.Command, args []string) error {
			if tenant == "" || listen == "" {
				return usageError{Err: errors.New("nbd needs --tenant NAME and --listen ADDR")}
			}
			if (certFile == "") != (keyFile == "") {
				return usageError{Err: errors.New("--tls-cert and --tls-key go together")}
			}
			var conf *tls.Config
			if certFile != "" {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return usageError{Err: fmt.Errorf("--tls-cert/--tls-key: %w", err)}
				}
				conf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ctx := c.Context()
			tr, snap, err := g.tenantSnapshot(ctx, tenant, escrowKey, args[0], name)
			if err != nil {
				return err
			}
			defer tr.close()
			ex, err := nbdexport.Open(ctx, tr.repo, snap.Snapshot, diskread.Options{CacheBytes: cacheMiB << 20})
			if err != nil {
				return fmt.Errorf("tenant %s snapshot %s: %w", tr.tenant.Name, snap.ID[:12], err)
			}
			defer ex.Close()
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return usageError{Err: fmt.Errorf("--listen %s: %w", listen, err)}
			}
			s := &nbd.Server{TLSConfig: conf, Logf: func(format string, a ...any) { g.log.Warn(fmt.Sprintf(format, a...)) }}
			ex.Serve(s)
			out := nbdOut{Type: "serving", Tenant: tr.tenant.Name, SnapshotID: snap.ID, Name: snap.Name,
				Listen: l.Addr().String(), TLS: conf != nil, Exports: ex.Names()}
			scheme := "nbd"
			if conf != nil {
				scheme = "nbds"
			}
			for _, n := range out.Exports {
				out.URIs = append(out.URIs, scheme+"://"+out.Listen+"/"+n)
			}
			if g.json {
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "serving tenant %s snapshot %s of %s on %s: %s\n", out.Tenant, snap.ID[:12], snap.Name, out.Listen, strings.Join(out.URIs, " "))
			}
			errc := make(chan error, 1)
			go func() { errc <- s.Serve(l) }()
			select {
			case <-ctx.Done():
				s.Close()
				<-errc
				return nil
			case err := <-errc:
				return err
			}
		},
	}
	f := c.Flags()
	f.StringVar(&tenant, "tenant", "", "tenant name or id")
	f.StringVar(&name, "name", "", "with latest: the newest snapshot of this name (VM)")
	f.StringVar(&listen, "listen", "", "address to serve on, e.g. 127.0.0.1:10809")
	f.StringVar(&certFile, "tls-cert", "", "TLS certificate (PEM); clients must then use TLS")
	f.StringVar(&keyFile, "tls-key", "", "TLS private key (PEM)")
	f.StringVar(&escrowKey, "escrow-key", "", "the escrow identity file (cofferd escrow init)")
	f.Int64Var(&cacheMiB, "cache-mib", 256, "memory for chunks fetched, per disk (MiB)")
	return c
}
