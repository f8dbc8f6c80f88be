package plugin

import (
	"context"
	"encoding/base64"
	"errors"

	"github.com/tetratelabs/wazero/api"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// MaxFetchedImage bounds the bytes fetch_image downloads: with the base64
// text (a third more) and the request the plugin builds around it, an image
// this size fits a plugin's default 64 MiB with room to spare.
const MaxFetchedImage = 8 << 20

// imageFetcher is what fetch_image needs of a call's egress
// (*egress.Client).
type imageFetcher interface {
	FetchImage(ctx context.Context, rawURL string, maxBytes int64) (string, []byte, error)
}

// fetchedImage is the last image of a call, kept so that the guest's second
// call with a larger buffer gets it without a second download.
type fetchedImage struct {
	url string
	out []byte // "<media type>\n<base64 data>"
}

// hostFetchImage is fetch_image(url, url_len, buf, cap) (ABI 1.2): it
// downloads the image at url through egress.Client.FetchImage (public
// addresses only unless the provider may reach private networks, checked
// after DNS and on redirects; no credentials; an image media type; at most
// MaxFetchedImage bytes, counted against the call's upstream body budget)
// and writes "<media type>\n<base64 data>" at buf when it fits, returning
// its full length either way.
func hostFetchImage(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
	u, ok := view(mod, uint32(a[0]), uint32(a[1]))
	if !ok || len(u) == 0 {
		return int32(abi.StatusInvalid)
	}
	if st.gone.Load() {
		return int32(abi.StatusClientGone)
	}
	if st.image == nil || st.image.url != string(u) {
		f, ok := st.inv.Egress.(imageFetcher)
		if !ok {
			return int32(abi.StatusDenied)
		}
		limit := min(int64(MaxFetchedImage), st.limits.MaxUpstreamBodyBytes-st.readN)
		if limit <= 0 {
			return int32(abi.StatusLimit)
		}
		ctx, cancel := context.WithTimeout(st.upCtx, st.limits.UpstreamTimeout)
		mt, data, err := f.FetchImage(ctx, string(u), limit)
		cancel()
		if err != nil {
			switch {
			case st.gone.Load():
				return int32(abi.StatusClientGone)
			case egress.IsDenied(err):
				return int32(abi.StatusDenied)
			case errors.Is(err, egress.ErrTooLarge):
				return int32(abi.StatusLimit)
			case errors.Is(err, egress.ErrNotImage):
				return int32(abi.StatusMalformed)
			case egress.IsTimeout(err):
				return int32(abi.StatusTimeout)
			}
			return int32(abi.StatusUnreachable)
		}
		st.readN += int64(len(data))
		out := make([]byte, 0, len(mt)+1+base64.StdEncoding.EncodedLen(len(data)))
		out = append(append(out, mt...), '\n')
		out = base64.StdEncoding.AppendEncode(out, data)
		st.image = &fetchedImage{url: string(u), out: out}
	}
	return copyOut(mod, uint32(a[2]), uint32(a[3]), st.image.out)
}
