package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

func purgeCommand() *command {
	return &command{
		name:    "purge",
		usage:   "[--admin URL] [--token TOKEN] [--soft] [--all | --prefix P ... | --tag T ... | URL ...]",
		summary: "purge cached content through the admin API (on every node it manages)",
		flags: func(fs *flag.FlagSet) func([]string) int {
			adminURL := fs.String("admin", envOr("OUTPOST_ADMIN", "http://127.0.0.1:9090"), "admin API base `URL` (env OUTPOST_ADMIN)")
			token := fs.String("token", "", "admin bearer `TOKEN` (default $OUTPOST_ADMIN_TOKEN)")
			soft := fs.Bool("soft", false, "mark entries stale instead of deleting them (served stale while revalidating)")
			all := fs.Bool("all", false, "purge everything")
			var prefixes, tags stringList
			fs.Var(&prefixes, "prefix", "purge every URL starting with `URL-PREFIX` (repeatable)")
			fs.Var(&tags, "tag", "purge every object carrying surrogate key `TAG` (repeatable)")
			return func(urls []string) int {
				if *token == "" {
					*token = os.Getenv("OUTPOST_ADMIN_TOKEN")
				}
				req := map[string]any{}
				if len(urls) > 0 {
					req["urls"] = urls
				}
				if len(prefixes) > 0 {
					req["prefixes"] = []string(prefixes)
				}
				if len(tags) > 0 {
					req["tags"] = []string(tags)
				}
				if *all {
					req["all"] = true
				}
				if len(req) == 0 {
					fmt.Fprintln(os.Stderr, "outpost purge: say what to purge: URLs, --prefix, --tag or --all")
					return 2
				}
				if *soft {
					req["soft"] = true
				}
				out, code, status := adminCall(http.MethodPost, *adminURL, "/v1/purge", *token, req)
				fmt.Fprint(os.Stdout, out)
				if status == http.StatusMultiStatus {
					// Some node did not apply it (yet): a script must not
					// take this for done.
					fmt.Fprintf(os.Stderr, "outpost purge: not applied everywhere: %s\n", notApplied(out))
					return 3
				}
				return code
			}
		},
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// notApplied lists the nodes of a 207 purge response that did not apply
// it, with why.
func notApplied(body string) string {
	var pr struct {
		Nodes map[string]struct {
			Applied bool   `json:"applied"`
			Queued  bool   `json:"queued"`
			Error   string `json:"error"`
		} `json:"nodes"`
	}
	if json.Unmarshal([]byte(body), &pr) != nil {
		return "see the response"
	}
	var out []string
	for name, n := range pr.Nodes {
		switch {
		case n.Applied:
			continue
		case n.Queued:
			out = append(out, name+" (queued: applied when it is back)")
		default:
			out = append(out, name+" ("+n.Error+")")
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// adminClient does not follow redirects: one would carry the token to
// wherever on the host it points, and turn a POST into a GET.
var adminClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// adminCall sends one JSON request to the admin API and returns the
// response body, an exit code (0 for 2xx, 1 otherwise) and the HTTP status
// (0 when there was no answer).
func adminCall(method, base, path, token string, body any) (string, int, int) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return fmt.Sprintf("outpost: %v\n", err), 1, 0
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return fmt.Sprintf("outpost: admin API unreachable: %v\n", err), 1, 0
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 3 {
		return fmt.Sprintf("outpost: the admin API answered %d, a redirect to %q; not followed (it would carry the token there): point --admin at the API itself\n",
			resp.StatusCode, resp.Header.Get("Location")), 1, resp.StatusCode
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		return string(b), 1, resp.StatusCode
	}
	return string(b), 0, resp.StatusCode
}
