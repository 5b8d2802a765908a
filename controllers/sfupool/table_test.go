package sfupool_test

import (
	"context"
	"net/http"
)

// newTableRequest asks for a list as a server-side Table, as kubectl get does.
func newTableRequest(url string, ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	return req, nil
}
