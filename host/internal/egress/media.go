package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Errors of FetchImage besides those of a refused destination.
var (
	ErrTooLarge = errors.New("egress: the image is larger than allowed")
	ErrNotImage = errors.New("egress: the resource is not an image")
	ErrFetch    = errors.New("egress: the image could not be fetched")
)

// imageTypes are the media types FetchImage accepts: the image formats the
// providers that need inline data document.
var imageTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/webp": true, "image/gif": true,
	"image/heic": true, "image/heif": true,
}

// FetchImage downloads an image a client named by URL, for a plugin whose
// provider wants image bytes inline. Unlike Do it may reach any host, since
// the client chose the URL, so everything else is strict:
//
//   - http or https only;
//   - every address is checked after DNS resolution and for every redirect:
//     loopback, private, link-local and the other ranges IsPrivate lists
//     are always refused, before any connection, even for a provider that
//     may reach private networks (that grant covers the provider's own
//     hosts, not addresses a client names). So a client learns nothing of
//     a private network, not even which ports are open;
//   - no credential of any kind is sent;
//   - at most maxBytes are read (ErrTooLarge beyond);
//   - the media type must be an image type Gemini and the like accept
//     (ErrNotImage otherwise); a generic or missing Content-Type is sniffed.
//
// It returns the media type and the bytes.
func (c *Client) FetchImage(ctx context.Context, rawURL string, maxBytes int64) (string, []byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", nil, fmt.Errorf("%w: bad URL", ErrFetch)
	}
	if err := c.checkScheme(u); err != nil {
		return "", nil, err
	}
	if u.Host == "" {
		return "", nil, fmt.Errorf("%w: bad URL", ErrFetch)
	}
	hc := &http.Client{
		Transport: c.imageTransport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: too many redirects", ErrFetch)
			}
			return c.checkScheme(req.URL)
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	req.Header.Set("Accept", "image/*")
	resp, err := hc.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("%w: HTTP %d", ErrFetch, resp.StatusCode)
	}
	if resp.ContentLength > maxBytes {
		return "", nil, ErrTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return "", nil, err
	}
	if int64(len(data)) > maxBytes {
		return "", nil, ErrTooLarge
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "" || mt == "application/octet-stream" || mt == "binary/octet-stream" {
		mt, _, _ = mime.ParseMediaType(http.DetectContentType(data))
	}
	mt = strings.ToLower(mt)
	if !imageTypes[mt] {
		return "", nil, fmt.Errorf("%w: %s", ErrNotImage, mt)
	}
	return mt, data, nil
}

// checkScheme allows https, and http for providers that may reach private
// networks.
func (c *Client) checkScheme(u *url.URL) error {
	if u.Scheme == "https" || u.Scheme == "http" {
		return nil
	}
	return ErrSchemeDenied
}
