package plugin

import (
	"context"
	"encoding/base64"
	"errors"

	"github.com/tetratelabs/wazero/api"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// MaxFetchedImage bounds the bytes fetch_image downloads: with the base64
// text (a third more) and the request the plugin builds around it, an image
// this size fits a plugin's default 64 MiB with room to spare.
const MaxFetchedImage = 8 << 20

// MaxImageFetches is how many images one stream may fetch.
const MaxImageFetches = 32

// ImageFetcher is what fetch_image needs of a stream's egress: the
// operator's grant for the provider, and the download itself (see
// egress.Client.FetchImage).
type ImageFetcher interface {
	ImageFetchAllowed() bool
	FetchImage(ctx context.Context, rawURL string, maxBytes int64) (string, []byte, error)
}

// imageURLs lists the image URLs of a chat request:
// messages[].content[].image_url.url, or image_url itself when it is a
// string.
func imageURLs(req []byte) map[string]struct{} {
	urls := map[string]struct{}{}
	gjson.GetBytes(req, "messages").ForEach(func(_, m gjson.Result) bool {
		m.Get("content").ForEach(func(_, part gjson.Result) bool {
			iu := part.Get("image_url")
			if iu.IsObject() {
				iu = iu.Get("url")
			}
			if iu.Type == gjson.String {
				urls[iu.String()] = struct{}{}
			}
			return true
		})
		return true
	})
	return urls
}

// mayFetch reports whether the stream may fetch url: the client's request
// names it as an image, and the stream has fetched fewer than
// MaxImageFetches images (it counts this one).
func (st *Stream) mayFetch(url string) abi.Status {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.images == nil {
		st.images = imageURLs(st.inv.Request)
	}
	if _, ok := st.images[url]; !ok {
		return abi.StatusDenied
	}
	if st.fetches >= MaxImageFetches {
		return abi.StatusLimit
	}
	st.fetches++
	return abi.StatusOK
}

// hostFetchImage is fetch_image(stream, url, url_len): it starts
// downloading the image at url through egress.Client.FetchImage (public
// addresses only, checked after DNS and on redirects; no credentials; an
// image media type; at most MaxFetchedImage bytes, counted against the
// stream's upstream body budget) and returns a handle at once. It is
// DENIED unless the plugin's manifest asks for the fetch_image capability,
// the operator allows the provider to fetch images, and the client's
// request names url as an image; LIMIT past MaxImageFetches images. The
// result comes as llmproxy_on_image with the length of "<media
// type>\n<base64 data>" (read with data_read) or a negative status.
func hostFetchImage(w *worker, mod api.Module, a []uint64) abi.Status {
	st := w.streamArg(a[0])
	raw, ok := view(mod, a[1], a[2])
	if st == nil || !ok || len(raw) == 0 || w.fns[fnImage] == nil {
		return abi.StatusInvalid
	}
	if st.isEnded() {
		return endedStatus(st.cause())
	}
	f, ok := st.inv.Egress.(ImageFetcher)
	if !ok || !w.v.Manifest.Has(abi.CapFetchImage) || !f.ImageFetchAllowed() {
		return abi.StatusDenied
	}
	if s := st.mayFetch(string(raw)); s != abi.StatusOK {
		return s
	}
	u, s := w.openHandle(st)
	if s != abi.StatusOK {
		return s
	}
	go u.fetchImage(f, string(raw))
	return abi.Status(u.handle)
}

func (u *upstream) fetchImage(f ImageFetcher, url string) {
	defer u.cancel()
	st := u.st
	limit := min(int64(MaxFetchedImage), st.lim.MaxUpstreamBodyBytes-st.readN.Load())
	if limit <= 0 {
		u.w.enqueue(task{kind: tImage, st: st, u: u, arg: int32(abi.StatusLimit)})
		return
	}
	ctx, cancel := context.WithTimeout(u.ctx, st.lim.UpstreamTimeout)
	mt, data, err := f.FetchImage(ctx, url, limit)
	cancel()
	if err != nil {
		status := abi.StatusUnreachable
		switch {
		case u.ctx.Err() != nil:
			return // closed by the guest, or the stream ended
		case egress.IsDenied(err):
			status = abi.StatusDenied
		case errors.Is(err, egress.ErrTooLarge):
			status = abi.StatusLimit
		case errors.Is(err, egress.ErrNotImage):
			status = abi.StatusMalformed
		case egress.IsTimeout(err):
			status = abi.StatusTimeout
		}
		u.w.enqueue(task{kind: tImage, st: st, u: u, arg: int32(status)})
		return
	}
	st.readN.Add(int64(len(data)))
	out := make([]byte, 0, len(mt)+1+base64.StdEncoding.EncodedLen(len(data)))
	out = append(append(out, mt...), '\n')
	out = base64.StdEncoding.AppendEncode(out, data)
	u.w.enqueue(task{kind: tImage, st: st, u: u, arg: int32(len(out)), data: out})
}
