package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "nstool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch {
	case len(args) == 2 && args[0] == "get":
		gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
		defer gcancel()
		req, err := http.NewRequestWithContext(gctx, http.MethodGet, args[1], nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", args[1], resp.Status)
		}
		return nil
	case len(args) == 4 && args[0] == "ls":
		c, err := minio.New(args[1], &minio.Options{
			Creds: credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
		})
		if err != nil {
			return err
		}
		for o := range c.ListObjects(ctx, args[2], minio.ListObjectsOptions{Prefix: args[3], Recursive: true}) {
			if o.Err != nil {
				return o.Err
			}
			fmt.Printf("%d %s\n", o.Size, o.Key)
		}
		return nil
	}
	return fmt.Errorf("usage: nstool get URL | nstool ls HOST:PORT BUCKET PREFIX")
}
