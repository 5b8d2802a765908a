package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TokenBytes is the number of random bytes in a generated token (64 hex
// characters).
const TokenBytes = 32

// ErrMissingKey is returned when an existing Secret lacks a wanted key.
var ErrMissingKey = errors.New("secret lacks a key")

// RandomHex returns n random bytes from r (crypto/rand when nil), hex-encoded.
func RandomHex(r io.Reader, n int) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("read %d random bytes: %w", n, err)
	}
	return hex.EncodeToString(b), nil
}

// LoadOrCreate returns the values under names in the Secret named by
// template, creating that Secret (template's metadata, owner references
// included) with a fresh random token under each name when it does not
// exist. An existing Secret is used as is, so a Secret given by the user
// works too; one that lacks a name gives ErrMissingKey. reader should read
// past any cache: a Secret just created by another replica must be seen.
func LoadOrCreate(ctx context.Context, reader client.Reader, writer client.Writer, template *corev1.Secret, names ...string) (map[string]string, error) {
	key := client.ObjectKeyFromObject(template)
	for range 2 {
		var s corev1.Secret
		err := reader.Get(ctx, key, &s)
		if err == nil {
			out := make(map[string]string, len(names))
			for _, n := range names {
				v := string(s.Data[n])
				if v == "" {
					return nil, fmt.Errorf("%w: secret %s has no %q", ErrMissingKey, key, n)
				}
				out[n] = v
			}
			return out, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get secret %s: %w", key, err)
		}
		s = *template.DeepCopy()
		s.Data = map[string][]byte{}
		for _, n := range names {
			v, err := RandomHex(nil, TokenBytes)
			if err != nil {
				return nil, fmt.Errorf("secret %s: %w", key, err)
			}
			s.Data[n] = []byte(v)
		}
		if err := writer.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create secret %s: %w", key, err)
		}
		// Read it back: another writer may have won the race.
	}
	return nil, fmt.Errorf("secret %s: created but not readable", key)
}
