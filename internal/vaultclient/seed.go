package vaultclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Limits on the seed replies of the vault: outside input.
const (
	// maxSeedReply bounds one SeedInfo or the list of them.
	maxSeedReply = 16 << 20
	// maxSeedsListed bounds the seeds of one tenant a list may hold.
	maxSeedsListed = 4096
	// maxSeedRepaired bounds the repaired files of one report.
	maxSeedRepaired = seed.MaxFiles
)

// ValidSeedID reports whether s is a seed ID: 64 lower-case hex digits.
func ValidSeedID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// RegisterSigningKey tells the vault the tenant's public seed signing key
// (POST RouteSigningKey). The vault keeps the first key it learns: the same
// key again is accepted, another one is refused with an error that says so
// (CodeSigningKeyMismatch).
func (v *Client) RegisterSigningKey(ctx context.Context, public string) error {
	if _, err := crypto.ParsePublicKey(public); err != nil {
		return &store.PermanentError{Err: fmt.Errorf("signing key: %w", err)}
	}
	body, err := json.Marshal(vaultapi.SigningKeyRequest{PublicKey: public})
	if err != nil {
		return err
	}
	return v.retrying(ctx, "register signing key", "", func() error {
		resp, err := v.seedRequest(ctx, http.MethodPost, vaultapi.RouteSigningKey, body, nil)
		if err != nil {
			return err
		}
		defer drainClose(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("registering the signing key with %s: %w", v.Location(), v.statusError(resp, http.MethodPost, ""))
		}
		return nil
	})
}

// RegisterSeed registers a seed in transit (PUT RouteSeeds/<id>) from the
// bytes of its manifest and its signature file, and returns the vault's
// record of it. Registering the same seed again returns the same record.
func (v *Client) RegisterSeed(ctx context.Context, id string, manifest, sig []byte) (*vaultapi.SeedInfo, error) {
	if !ValidSeedID(id) {
		return nil, &store.PermanentError{Err: fmt.Errorf("seed id %q is not 64 lower-case hex digits", clipID(id))}
	}
	hdr := http.Header{}
	hdr.Set(vaultapi.HeaderSeedSignature, strings.TrimSpace(string(sig)))
	hdr.Set("Content-Type", "application/json")
	var info *vaultapi.SeedInfo
	err := v.retrying(ctx, "register seed", id, func() error {
		resp, err := v.seedRequest(ctx, http.MethodPut, vaultapi.RouteSeeds+"/"+id, manifest, hdr)
		if err != nil {
			return err
		}
		defer drainClose(resp.Body)
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return fmt.Errorf("registering seed %s with %s: %w", id[:12], v.Location(), v.statusError(resp, http.MethodPut, ""))
		}
		info, err = v.readSeedInfo(resp.Body, id)
		return err
	})
	return info, err
}

// Seeds lists the tenant's seeds (GET RouteSeeds).
func (v *Client) Seeds(ctx context.Context) ([]vaultapi.SeedInfo, error) {
	var out []vaultapi.SeedInfo
	err := v.retrying(ctx, "list seeds", "", func() error {
		b, err := v.seedGet(ctx, vaultapi.RouteSeeds, "listing the seeds", maxSeedReply)
		if err != nil {
			return err
		}
		out, err = ParseSeedList(b)
		if err != nil {
			return &store.PermanentError{Err: fmt.Errorf("vault %s: the seed list: %w", v.Location(), err)}
		}
		return nil
	})
	return out, err
}

// Seed returns the vault's record of one seed, with its import report
// once imported (GET RouteSeeds/<id>).
func (v *Client) Seed(ctx context.Context, id string) (*vaultapi.SeedInfo, error) {
	if !ValidSeedID(id) {
		return nil, &store.PermanentError{Err: fmt.Errorf("seed id %q is not 64 lower-case hex digits", clipID(id))}
	}
	var info *vaultapi.SeedInfo
	err := v.retrying(ctx, "get seed", id, func() error {
		b, err := v.seedGet(ctx, vaultapi.RouteSeeds+"/"+id, "reading seed "+id[:12], maxSeedReply)
		if err != nil {
			return err
		}
		info, err = v.parseSeedInfo(b, id)
		return err
	})
	return info, err
}

// SeedManifest fetches the registered manifest of a seed (GET
// RouteSeeds/<id>/manifest), checked by seed.Parse and against the ID
// asked for. It returns the parsed manifest and its bytes. The signature
// is not checked here: the vault checked it at registration.
func (v *Client) SeedManifest(ctx context.Context, id string) (*seed.Manifest, []byte, error) {
	if !ValidSeedID(id) {
		return nil, nil, &store.PermanentError{Err: fmt.Errorf("seed id %q is not 64 lower-case hex digits", clipID(id))}
	}
	var m *seed.Manifest
	var body []byte
	err := v.retrying(ctx, "get seed manifest", id, func() error {
		b, err := v.seedGet(ctx, vaultapi.RouteSeeds+"/"+id+"/manifest", "reading the manifest of seed "+id[:12], vaultapi.MaxSeedManifest)
		if err != nil {
			return err
		}
		if m, err = seed.Parse(b); err != nil {
			return &store.PermanentError{Err: fmt.Errorf("vault %s: the manifest of seed %s: %w", v.Location(), id[:12], err)}
		}
		if m.ID != id {
			return &store.PermanentError{Err: fmt.Errorf("vault %s: asked for the manifest of seed %s, got seed %s's", v.Location(), id[:12], m.ID[:12])}
		}
		body = b
		return nil
	})
	return m, body, err
}

// ConfirmSeed confirms that the agent saw the seed's clean import report
// (POST RouteSeeds/<id>/confirm); the vault refuses it while the report
// is missing or not clean. It returns the seed's record after.
func (v *Client) ConfirmSeed(ctx context.Context, id string) (*vaultapi.SeedInfo, error) {
	if !ValidSeedID(id) {
		return nil, &store.PermanentError{Err: fmt.Errorf("seed id %q is not 64 lower-case hex digits", clipID(id))}
	}
	var info *vaultapi.SeedInfo
	err := v.retrying(ctx, "confirm seed", id, func() error {
		resp, err := v.seedRequest(ctx, http.MethodPost, vaultapi.RouteSeeds+"/"+id+"/confirm", nil, nil)
		if err != nil {
			return err
		}
		defer drainClose(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("confirming seed %s with %s: %w", id[:12], v.Location(), v.statusError(resp, http.MethodPost, ""))
		}
		info, err = v.readSeedInfo(resp.Body, id)
		return err
	})
	return info, err
}

// CancelSeed declares the seed lost (POST RouteSeeds/<id>/cancel) with
// reason; cancelling a cancelled seed changes nothing. It returns the
// seed's record after.
func (v *Client) CancelSeed(ctx context.Context, id, reason string) (*vaultapi.SeedInfo, error) {
	if !ValidSeedID(id) {
		return nil, &store.PermanentError{Err: fmt.Errorf("seed id %q is not 64 lower-case hex digits", clipID(id))}
	}
	body, err := json.Marshal(vaultapi.SeedCancelRequest{Reason: reason})
	if err != nil {
		return nil, err
	}
	var info *vaultapi.SeedInfo
	err = v.retrying(ctx, "cancel seed", id, func() error {
		resp, err := v.seedRequest(ctx, http.MethodPost, vaultapi.RouteSeeds+"/"+id+"/cancel", body, nil)
		if err != nil {
			return err
		}
		defer drainClose(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("cancelling seed %s with %s: %w", id[:12], v.Location(), v.statusError(resp, http.MethodPost, ""))
		}
		info, err = v.readSeedInfo(resp.Body, id)
		return err
	})
	return info, err
}

// SeedLostPacks fetches the packs a cancelled seed held that the vault
// did not (GET RouteSeeds/<id>/lost), checked by
// vaultapi.ParseSeedLostPacks.
func (v *Client) SeedLostPacks(ctx context.Context, id string) (*vaultapi.SeedLostPacks, error) {
	if !ValidSeedID(id) {
		return nil, &store.PermanentError{Err: fmt.Errorf("seed id %q is not 64 lower-case hex digits", clipID(id))}
	}
	var lost *vaultapi.SeedLostPacks
	err := v.retrying(ctx, "lost packs of seed", id, func() error {
		b, err := v.seedGet(ctx, vaultapi.RouteSeeds+"/"+id+"/lost", "reading the lost packs of seed "+id[:12], vaultapi.MaxSeedLostPacks)
		if err != nil {
			return err
		}
		if lost, err = vaultapi.ParseSeedLostPacks(b, id); err != nil {
			return &store.PermanentError{Err: fmt.Errorf("vault %s: the lost packs of seed %s: %w", v.Location(), id[:12], err)}
		}
		return nil
	})
	return lost, err
}

// seedRequest sends one request with body (nil: none).
func (v *Client) seedRequest(ctx context.Context, method, route string, body []byte, hdr http.Header) (*http.Response, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := v.newRequest(ctx, method, v.endpoint(route, nil), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("vault %s: %s %s: %w", v.Location(), method, route, transportError(err))
	}
	return resp, nil
}

// seedGet GETs route and returns its body, at most limit bytes.
func (v *Client) seedGet(ctx context.Context, route, what string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := v.seedRequest(ctx, http.MethodGet, route, nil, nil)
	if err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s from %s: %w", what, v.Location(), v.statusError(resp, http.MethodGet, ""))
	}
	body := newIdleReader(resp.Body, vaultIdleTimeout, cancel)
	defer body.stop()
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s from %s: %w", what, v.Location(), err)
	}
	if int64(len(b)) > limit {
		return nil, &store.PermanentError{Err: fmt.Errorf("%s from %s: the reply is over %d bytes", what, v.Location(), limit)}
	}
	return b, nil
}

func (v *Client) readSeedInfo(r io.Reader, id string) (*vaultapi.SeedInfo, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSeedReply+1))
	if err != nil {
		return nil, fmt.Errorf("vault %s: reading the record of seed %s: %w", v.Location(), id[:12], err)
	}
	return v.parseSeedInfo(b, id)
}

func (v *Client) parseSeedInfo(b []byte, id string) (*vaultapi.SeedInfo, error) {
	info, err := ParseSeedInfo(b)
	if err == nil && info.ID != id {
		err = fmt.Errorf("asked about seed %s, the vault answered about seed %s", id[:12], info.ID[:12])
	}
	if err != nil {
		return nil, &store.PermanentError{Err: fmt.Errorf("vault %s: the record of seed %s: %w", v.Location(), id[:12], err)}
	}
	return info, nil
}

// ParseSeedInfo decodes one SeedInfo from the vault and checks it
// (CheckSeedInfo). Unknown fields are ignored: a newer vault may add some.
func ParseSeedInfo(b []byte) (*vaultapi.SeedInfo, error) {
	if len(b) > maxSeedReply {
		return nil, fmt.Errorf("over %d bytes", maxSeedReply)
	}
	var info vaultapi.SeedInfo
	if err := decodeOne(b, &info); err != nil {
		return nil, err
	}
	if err := CheckSeedInfo(&info); err != nil {
		return nil, err
	}
	return &info, nil
}

// ParseSeedList decodes the reply of GET RouteSeeds: {"seeds": [...]},
// every seed checked, none twice.
func ParseSeedList(b []byte) ([]vaultapi.SeedInfo, error) {
	if len(b) > maxSeedReply {
		return nil, fmt.Errorf("over %d bytes", maxSeedReply)
	}
	var list struct {
		Seeds *[]vaultapi.SeedInfo `json:"seeds"`
	}
	if err := decodeOne(b, &list); err != nil {
		return nil, err
	}
	if list.Seeds == nil {
		return nil, errors.New(`no "seeds" array`)
	}
	seeds := *list.Seeds
	if len(seeds) > maxSeedsListed {
		return nil, fmt.Errorf("%d seeds, more than %d", len(seeds), maxSeedsListed)
	}
	seen := map[string]bool{}
	for i := range seeds {
		if err := CheckSeedInfo(&seeds[i]); err != nil {
			return nil, fmt.Errorf("seed %d: %w", i, err)
		}
		if seen[seeds[i].ID] {
			return nil, fmt.Errorf("seed %s is listed twice", seeds[i].ID[:12])
		}
		seen[seeds[i].ID] = true
	}
	return seeds, nil
}

func decodeOne(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not valid JSON: %v", err)
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// CheckSeedInfo checks a seed record from the vault and makes its text
// safe to print (the vault's strings are cleaned of control characters).
func CheckSeedInfo(s *vaultapi.SeedInfo) error {
	switch {
	case !ValidSeedID(s.ID):
		return fmt.Errorf("seed id %q is not 64 lower-case hex digits", clipOutside(s.ID))
	case s.State != vaultapi.SeedTravelling && s.State != vaultapi.SeedImported && s.State != vaultapi.SeedCancelled:
		return fmt.Errorf("seed %s: unknown state %q", s.ID[:12], clipOutside(s.State))
	case s.Objects < 0 || s.Objects > seed.MaxFiles || s.Bytes < 0:
		return fmt.Errorf("seed %s: %d objects, %d bytes", s.ID[:12], s.Objects, s.Bytes)
	case len(s.Snapshots) > s.Objects:
		return fmt.Errorf("seed %s: %d snapshots in %d objects", s.ID[:12], len(s.Snapshots), s.Objects)
	}
	for _, id := range s.Snapshots {
		if !ValidSeedID(id) { // snapshot IDs have the same form
			return fmt.Errorf("seed %s: snapshot id %q is not 64 lower-case hex digits", s.ID[:12], clipOutside(id))
		}
	}
	s.Host, s.Signer = cleanOutside(s.Host, 255), cleanOutside(s.Signer, 128)
	s.Reason = cleanOutside(s.Reason, vaultapi.MaxSeedCancelReason)
	if s.Report != nil {
		if err := checkSeedReport(s.ID, s.Report); err != nil {
			return err
		}
	}
	return nil
}

func checkSeedReport(id string, r *vaultapi.SeedReport) error {
	switch {
	case r.Seed != id:
		return fmt.Errorf("seed %s: its import report is of seed %q", id[:12], clipOutside(r.Seed))
	case r.Objects < 0 || r.Bytes < 0 || r.Uploaded < 0 || r.UploadedBytes < 0 || r.Present < 0 ||
		r.Uploaded > r.Objects || r.Present > r.Objects || r.Seconds < 0:
		return fmt.Errorf("seed %s: its import report has impossible counts", id[:12])
	case len(r.Repaired) > maxSeedRepaired:
		return fmt.Errorf("seed %s: its import report names %d repaired files", id[:12], len(r.Repaired))
	}
	r.Tenant, r.Signer = cleanOutside(r.Tenant, 64), cleanOutside(r.Signer, 128)
	for i := range r.Repaired {
		r.Repaired[i].Name = cleanOutside(r.Repaired[i].Name, store.MaxNameLen)
		r.Repaired[i].Problem = cleanOutside(r.Repaired[i].Problem, vaultMaxMessage)
	}
	return nil
}
