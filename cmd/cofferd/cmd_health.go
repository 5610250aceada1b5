package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// newHealthCmd is `cofferd health --url URL`: a probe for container
// healthchecks and scripts, since the runtime image has no curl. It exits 0
// when URL answers 200 within the timeout, 1 otherwise.
func newHealthCmd(g *globals) *cobra.Command {
	var (
		target  string
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "health --url URL",
		Short: "Probe a cofferd /healthz endpoint (exit 0 when healthy)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			u, err := url.Parse(target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				return usageError{Err: fmt.Errorf("--url %q: want http(s)://host:port/healthz", target)}
			}
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("%s: %w", u.Redacted(), err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: unhealthy: %s", u.Redacted(), unhealthyText(resp.Status, body))
			}
			if g.json {
				return g.printJSON(healthOut{URL: u.Redacted(), Healthy: true, HTTPStatus: resp.StatusCode})
			}
			fmt.Fprintf(g.stdout, "healthy: %s\n", u.Redacted())
			return nil
		},
	}
	c.Flags().StringVar(&target, "url", "http://127.0.0.1:9464/healthz", "the /healthz URL to probe")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return c
}

type healthOut struct {
	URL        string `json:"url"`
	Healthy    bool   `json:"healthy"`
	HTTPStatus int    `json:"http_status"`
}

// unhealthyText describes a failed probe: the vault's error code and
// message when the body is its error object, else the start of the body.
func unhealthyText(status string, body []byte) string {
	var eb vaultapi.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		return fmt.Sprintf("%s %s: %s", status, eb.Error.Code, termtext.Clip(eb.Error.Message, 200))
	}
	return fmt.Sprintf("%s %s", status, termtext.Clip(string(body), 200))
}
