package sdk

import (
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Images holds what Stream.FetchImages downloaded, by URL.
type Images struct {
	urls    []string
	types   []string
	data    [][]byte
	errs    []error
	pending int
	then    func(s *Stream, imgs *Images) error
}

// Get returns the image fetched from url: its media type and its bytes in
// base64, ready for a JSON string. err is a *StatusError when the host
// refused or could not fetch it (DENIED, MALFORMED: not an image, LIMIT:
// too large, UNREACHABLE, TIMEOUT), or when url was not asked for.
func (im *Images) Get(url string) (mediaType string, base64Data []byte, err error) {
	if i := indexOf(im.urls, url); i >= 0 {
		return im.types[i], im.data[i], im.errs[i]
	}
	return "", nil, &StatusError{Op: "fetch_image", Status: abi.StatusNotFound}
}

// Len is the number of distinct URLs asked for.
func (im *Images) Len() int { return len(im.urls) }

type imageSlot struct {
	s  *Stream
	im *Images
	i  int
}

// FetchImages has the host download images a client named by http(s) URL,
// for providers that want image bytes inline, and calls then, in a later
// callback, once every one has arrived or failed. The host fetches them at
// the same time. Every fetch is DENIED unless the plugin's manifest lists
// the "fetch_image" capability and the operator allows the provider to
// fetch images (allow_image_fetch); the host also refuses URLs the
// client's request does not name as an image, private addresses, other
// schemes, anything that is not an image or is over its size cap, and
// more than 32 images per request (LIMIT). Each URL is fetched once,
// however often it is listed.
func (s *Stream) FetchImages(urls []string, then func(s *Stream, imgs *Images) error) error {
	if s.ended {
		return ErrEnded
	}
	im := &Images{then: then}
	for _, u := range urls {
		if indexOf(im.urls, u) >= 0 {
			continue
		}
		i := len(im.urls)
		im.urls = append(im.urls, u)
		im.types = append(im.types, "")
		im.data = append(im.data, nil)
		im.errs = append(im.errs, nil)
		h := s.g.host.FetchImage(s.id, []byte(u))
		if h < 0 {
			im.errs[i] = statusErr("fetch_image", h)
			continue
		}
		s.g.images[h] = imageSlot{s, im, i}
		s.handles = append(s.handles, h)
		im.pending++
	}
	if im.pending == 0 {
		return then(s, im)
	}
	return nil
}

func indexOf(list []string, v string) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return -1
}

// OnImage is llmproxy_on_image: an image fetch ended with the length of
// "<media type>\n<base64 data>" (read with data_read) or a negative status.
func (g *Guest) OnImage(stream, handle, result int32) int32 {
	slot, ok := g.images[handle]
	s := g.streams[stream]
	if !ok || s == nil || slot.s != s {
		return 0 // an unknown handle, or another stream's
	}
	delete(g.images, handle)
	for i, h := range s.handles {
		if h == handle {
			s.handles = append(s.handles[:i], s.handles[i+1:]...)
			break
		}
	}
	g.begin(s)
	defer g.end()
	im := slot.im
	if result < 0 {
		im.errs[slot.i] = statusErr("fetch_image", result)
	} else if data, err := g.readData(result); err != nil {
		im.errs[slot.i] = err
	} else {
		sep := -1
		for j, b := range data {
			if b == '\n' {
				sep = j
				break
			}
		}
		if sep < 0 {
			im.errs[slot.i] = &StatusError{Op: "fetch_image", Status: abi.StatusInvalid}
		} else {
			im.types[slot.i] = string(data[:sep])
			im.data[slot.i] = append([]byte(nil), data[sep+1:]...)
		}
	}
	if im.pending--; im.pending == 0 && !s.ended {
		s.check(im.then(s, im))
	}
	return 0
}
