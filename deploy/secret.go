package deploy

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/uploader"
)

// Credentials are the store credentials a mover needs. Their fields redact
// themselves when printed.
type Credentials struct {
	AccessKeyID     uploader.Secret
	SecretAccessKey uploader.Secret
	SessionToken    uploader.Secret
	CABundle        []byte // PEM; not secret, but travels in the same Secret
}

// CredentialsSecret renders the Secret kbak creates for one run's movers.
func CredentialsSecret(ns, name string, labels map[string]string, c Credentials) *corev1.Secret {
	data := map[string][]byte{
		KeyAccessKeyID:     []byte(string(c.AccessKeyID)),
		KeySecretAccessKey: []byte(string(c.SecretAccessKey)),
	}
	if c.SessionToken != "" {
		data[KeySessionToken] = []byte(string(c.SessionToken))
	}
	if len(c.CABundle) > 0 {
		data[KeyCABundle] = c.CABundle
	}
	immutable := true
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Immutable:  &immutable,
		Data:       data,
	}
}
