package metering

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchboard-rtc/switchboard/api/v1alpha1"
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
	key := types.NamespacedName{Namespace: namespace, Name: name}
	for range 2 {
		var s corev1.Secret
		err := reader.Get(ctx, key, &s)
		if err == nil {
			hubToken, adminKey = string(s.Data[SecretKeyHubToken]), string(s.Data[SecretKeyAdminKey])
			if hubToken == "" || adminKey == "" {
				return "", "", fmt.Errorf("secret %s lacks %q or %q", key, SecretKeyHubToken, SecretKeyAdminKey)
			}
			return hubToken, adminKey, nil
		}
		if !apierrors.IsNotFound(err) {
			return "", "", fmt.Errorf("get secret %s: %w", key, err)
		}
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
				Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedBy}},
			Data: map[string][]byte{SecretKeyHubToken: []byte(randomHex()), SecretKeyAdminKey: []byte(randomHex())},
		}
		if err := writer.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", "", fmt.Errorf("create secret %s: %w", key, err)
		}
		// Read it back (another replica may have won the race).
	}
	return "", "", fmt.Errorf("secret %s: created but not readable", key)
}

func randomHex() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
