package hsmclient

import (
	"context"
	"sort"
)

// KeyDifference is a key that some clusters hold and others lack.
type KeyDifference struct {
	Label     string   `json:"label"`
	ID        string   `json:"id"`
	Type      KeyType  `json:"type"`
	PresentOn []string `json:"present_on"`
	MissingOn []string `json:"missing_on"`
}

// DiffKeys compares the keys (by label and CKA_ID) of every cluster and
// returns those not present everywhere, sorted by label: a DR cluster
// restored from an old backup lacks the keys created since. Every cluster
// must be reachable.
func (c *Client) DiffKeys(ctx context.Context) ([]KeyDifference, error) {
	type keyID struct{ label, id string }
	found := map[keyID]*KeyDifference{}
	holders := map[keyID]map[string]bool{}
	for _, name := range c.Clusters() {
		keys, err := c.ListKeysOn(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			id := keyID{k.Label, k.ID}
			if found[id] == nil {
				found[id] = &KeyDifference{Label: k.Label, ID: k.ID, Type: k.Type}
				holders[id] = map[string]bool{}
			}
			holders[id][name] = true
		}
	}
	var diffs []KeyDifference
	for id, d := range found {
		for _, name := range c.Clusters() {
			if holders[id][name] {
				d.PresentOn = append(d.PresentOn, name)
			} else {
				d.MissingOn = append(d.MissingOn, name)
			}
		}
		if len(d.MissingOn) > 0 {
			diffs = append(diffs, *d)
		}
	}
	sort.Slice(diffs, func(i, j int) bool {
		if diffs[i].Label != diffs[j].Label {
			return diffs[i].Label < diffs[j].Label
		}
		return diffs[i].ID < diffs[j].ID
	})
	return diffs, nil
}
