package admin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// ApplyPurge takes what the purge endpoint takes, and answers what a peer's
// admin API answers a pushed purge; anything else in the stream (a foreign
// or damaged entry) is refused with the endpoint's message.
func TestApplyPurge(t *testing.T) {
	apply := ApplyPurge([]PurgeTarget{{Node: "b", Cache: testCache(t)}})
	for _, c := range []struct {
		body, err string
	}{
		{body: `{"all":true}`},
		{body: `{"urls":["http://www.example.test/a.css"],"soft":true}`},
		{body: `{"tags":["t1"]}`},
		{body: `not json`, err: "not a purge"},
		{body: `{"everything":true}`, err: "not a purge"},
		{body: `{}`, err: "say what to purge"},
		{body: `{"urls":["/a.css"]}`, err: "is not an absolute URL"},
		{body: `{"prefixes":["ftp://x/"]}`, err: "is not an absolute URL"},
	} {
		res, err := apply(context.Background(), []byte(c.body))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.body, err, c.err)
			}
			continue
		}
		var pr PurgeResponse
		if err != nil || json.Unmarshal(res, &pr) != nil || !pr.Nodes["b"].Applied {
			t.Errorf("%s: answer %s, %v", c.body, res, err)
		}
	}
}
