package metering

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
	"github.com/switchboard-rtc/switchboard/controllers/keys"
)

// Keys of the hub Secret.
const (
	SecretKeyHubToken = "hub-token"
	SecretKeyAdminKey = "admin-api-key"
)

// LoadOrCreateKeys reads the hub token and the admin API key from Secret
// namespace/name, creating it with random values when it does not exist,
// so both stay the same across manager restarts. A Secret given by the
// user (same name, same keys) is used as is. reader must read past the
// cache (the manager's API reader); it works before the manager starts.
func LoadOrCreateKeys(ctx context.Context, reader client.Reader, writer client.Writer, namespace, name string) (hubToken, adminKey string, err error) {
	tmpl := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
		Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedBy}}}
	v, err := keys.LoadOrCreate(ctx, reader, writer, tmpl, SecretKeyHubToken, SecretKeyAdminKey)
	if err != nil {
		return "", "", err
	}
	return v[SecretKeyHubToken], v[SecretKeyAdminKey], nil
}
