package services

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	_ "image/gif"  // registers the GIF decoder for upload validation
	_ "image/jpeg" // registers the JPEG decoder for upload validation
	_ "image/png"  // registers the PNG decoder for upload validation
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/origin"
	"github.com/outpost-edge/outpost/origin/store"
)

// mediaPrefix is where uploaded media are served; the edge caches it.
const mediaPrefix = "/static/media/"

// mediaExt maps an accepted sniffed content type to a file extension.
func mediaExt(contentType string) (string, bool) {
	switch contentType {
	case "image/png":
		return "png", true
	case "image/jpeg":
		return "jpg", true
	case "image/gif":
		return "gif", true
	case "image/webp":
		return "webp", true
	}
	return "", false
}

// validMediaName accepts exactly "<64 lowercase hex>.<known ext>", so a
// name from a URL can never be anything else (no traversal, no surprises).
func validMediaName(name string) bool {
	sum, ext, ok := strings.Cut(name, ".")
	if !ok || len(sum) != 64 {
		return false
	}
	for i := 0; i < len(sum); i++ {
		c := sum[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	switch ext {
	case "png", "jpg", "gif", "webp":
		return true
	}
	return false
}

// MediaView is the answer to an upload.
type MediaView struct {
	URL         string `json:"url"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	Created     bool   `json:"created"` // false when the same bytes were already stored
}

// errTooLarge reports an upload over the limit.
var errTooLarge = errors.New("upload too large")

// readUpload returns the uploaded bytes: the "file" part of a
// multipart/form-data body, or the raw body otherwise.
func readUpload(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	// The body may carry multipart framing around the file.
	body := http.MaxBytesReader(w, r.Body, limit+64<<10)
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var src io.Reader = body
	if mt == "multipart/form-data" {
		if params["boundary"] == "" {
			return nil, errBadInput("malformed multipart body")
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil, errBadInput(`multipart body has no "file" part`)
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errTooLarge
			}
			if err != nil {
				return nil, errBadInput("malformed multipart body")
			}
			if p.FormName() == "file" {
				src = p
				break
			}
		}
	}
	data, err := io.ReadAll(io.LimitReader(src, limit+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || int64(len(data)) > limit {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, errBadInput("could not read the upload")
	}
	return data, nil
}

// storeMedia validates an image and stores it content-addressed.
func (a *App) storeMedia(ctx context.Context, owner string, data []byte) (MediaView, error) {
	if len(data) == 0 {
		return MediaView{}, errBadInput("empty upload")
	}
	ct := http.DetectContentType(data)
	ext, ok := mediaExt(ct)
	if !ok {
		return MediaView{}, errBadInput("only PNG, JPEG, GIF and WebP images are accepted")
	}
	if ct != "image/webp" {
		// The standard library cannot decode WebP; the others must at
		// least have a readable header, so a renamed file is refused.
		if _, _, err := image.DecodeConfig(bytes.NewReader(data)); err != nil {
			return MediaView{}, errBadInput("the image could not be decoded")
		}
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	name := hexSum + "." + ext
	created, err := a.store.PutMedia(ctx, store.Media{Name: name, ContentType: ct, Size: int64(len(data)),
		OwnerID: owner, CreatedAt: a.now().UTC()}, data)
	if err != nil {
		return MediaView{}, err
	}
	return MediaView{URL: mediaPrefix + name, SHA256: hexSum, ContentType: ct, Size: int64(len(data)), Created: created}, nil
}

func (a *App) uploadMedia(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	data, err := readUpload(w, r, a.cfg.MaxUpload)
	if errors.Is(err, errTooLarge) {
		httperr.Write(w, r, http.StatusRequestEntityTooLarge, "too_large", "upload exceeds the size limit")
		return
	}
	if err != nil {
		a.failInput(w, r, err, "media")
		return
	}
	v, err := a.storeMedia(r.Context(), uid, data)
	if err != nil {
		a.failInput(w, r, err, "media")
		return
	}
	status := http.StatusCreated
	if !v.Created {
		status = http.StatusOK
	}
	origin.SetPrivate(w.Header())
	w.Header().Set("Location", v.URL)
	writeJSON(w, status, v)
}

// getMedia serves an uploaded file. The URL names the content, so the
// response is immutable: the edge and browsers keep it for a year.
func (a *App) getMedia(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if !validMediaName(name) {
		httperr.Write(w, r, http.StatusNotFound, "not_found", "media not found")
		return
	}
	m, data, err := a.store.Media(r.Context(), name)
	if err != nil {
		a.fail(w, r, err, "media")
		return
	}
	sum, _, _ := strings.Cut(name, ".")
	h := w.Header()
	h.Set("Content-Type", m.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", `"`+sum+`"`)
	origin.SetCache(h, origin.Immutable)
	origin.SetSurrogateKeys(h, "media", "media-"+sum)
	http.ServeContent(w, r, name, m.CreatedAt, bytes.NewReader(data))
}
