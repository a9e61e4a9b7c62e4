package services

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/origin"
)

// staticFS holds the text assets; the images are drawn at start so the
// repository carries no binary files.
//
//go:embed static
var staticFS embed.FS

type staticAsset struct {
	contentType string
	data        []byte
	etag        string
}

// staticModTime is a fixed Last-Modified for the built-in assets: they
// change only with the binary, and a stable value keeps edge revalidation
// (If-Modified-Since) answering 304.
func staticModTime() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

func buildStatics() (map[string]staticAsset, error) {
	out := map[string]staticAsset{}
	add := func(name, ct string, data []byte) {
		sum := sha256.Sum256(data)
		out[name] = staticAsset{contentType: ct, data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("services: static assets: %w", err)
	}
	for _, e := range entries {
		data, err := fs.ReadFile(staticFS, "static/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("services: static assets: %w", err)
		}
		var ct string
		switch path.Ext(e.Name()) {
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		default:
			ct = "application/octet-stream"
		}
		add(e.Name(), ct, data)
	}
	logo, err := LogoPNG()
	if err != nil {
		return nil, err
	}
	add("logo.png", "image/png", logo)
	return out, nil
}

// getStatic serves the built-in assets with the long TTL class and
// surrogate keys "static" and "static-<name>", so one purge by tag can drop
// all of them or one.
func (a *App) getStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	asset, ok := a.statics[name]
	if !ok {
		httperr.Write(w, r, http.StatusNotFound, "not_found", "no such static asset")
		return
	}
	h := w.Header()
	h.Set("Content-Type", asset.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", asset.etag)
	origin.SetCache(h, origin.Long)
	origin.SetSurrogateKeys(h, "static", "static-"+name)
	http.ServeContent(w, r, name, staticModTime(), bytes.NewReader(asset.data))
}

// LogoPNG draws the 64×64 demo logo: a blue disc with a white ring.
func LogoPNG() ([]byte, error) {
	const n = 64
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	blue := color.NRGBA{0x2f, 0x7d, 0xe1, 0xff}
	white := color.NRGBA{0xff, 0xff, 0xff, 0xff}
	for y := range n {
		for x := range n {
			dx, dy := x*2-n+1, y*2-n+1
			d2 := dx*dx + dy*dy
			switch {
			case d2 <= 60*60 && d2 >= 40*40 && d2 <= 46*46:
				img.Set(x, y, white)
			case d2 <= 60*60:
				img.Set(x, y, blue)
			}
		}
	}
	return encodePNG(img)
}

// DemoImagePNG draws the seeded tweet image: a 96×64 sky-to-sea gradient
// with a sun. It is deterministic, so its content address never changes.
func DemoImagePNG() ([]byte, error) {
	const w, h = 96, 64
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(40 + y*2), uint8(110 + y), uint8(200 - y), 0xff}
			if y > 40 {
				c = color.NRGBA{0x1c, uint8(60 + (x % 8)), 0x8a, 0xff}
			}
			if dx, dy := x-70, y-20; dx*dx+dy*dy <= 100 {
				c = color.NRGBA{0xff, 0xd2, 0x3f, 0xff}
			}
			img.Set(x, y, c)
		}
	}
	return encodePNG(img)
}

func encodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("services: encode png: %w", err)
	}
	return buf.Bytes(), nil
}
