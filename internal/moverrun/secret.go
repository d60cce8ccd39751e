package moverrun

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/uploader"
)

// SecretError is a credentials Secret that cannot serve: it does not exist,
// or lacks one of the keys every mover reads.
type SecretError struct {
	Namespace, Name string
	// MissingKey is the key the Secret lacks; empty when there is no Secret.
	MissingKey string
}

func (e *SecretError) Error() string {
	if e.MissingKey == "" {
		return fmt.Sprintf("secret %s/%s not found", e.Namespace, e.Name)
	}
	return fmt.Sprintf("secret %s/%s has no key %s: kbak and its movers read the store credentials from keys %s and %s",
		e.Namespace, e.Name, e.MissingKey, deploy.KeyAccessKeyID, deploy.KeySecretAccessKey)
}

// NotFound reports whether the Secret does not exist at all.
func (e *SecretError) NotFound() bool { return e.MissingKey == "" }

// UseSecret checks that Secret ns/name exists with the credential keys and
// returns a reference to it, so that a typo fails before anything is made.
func UseSecret(ctx context.Context, kc kubernetes.Interface, ns, name string) (deploy.SecretRef, error) {
	s, err := getSecret(ctx, kc, ns, name)
	if err != nil {
		return deploy.SecretRef{}, err
	}
	return deploy.SecretRef{Name: s.Name, SessionToken: hasKey(s, deploy.KeySessionToken), CABundle: hasKey(s, deploy.KeyCABundle)}, nil
}

// ReadCredentials returns the credentials Secret ns/name holds, for a run
// whose movers work in another namespace.
func ReadCredentials(ctx context.Context, kc kubernetes.Interface, ns, name string) (deploy.Credentials, error) {
	s, err := getSecret(ctx, kc, ns, name)
	if err != nil {
		return deploy.Credentials{}, err
	}
	return deploy.Credentials{
		AccessKeyID:     uploader.Secret(value(s, deploy.KeyAccessKeyID)),
		SecretAccessKey: uploader.Secret(value(s, deploy.KeySecretAccessKey)),
		SessionToken:    uploader.Secret(value(s, deploy.KeySessionToken)),
		CABundle:        value(s, deploy.KeyCABundle),
	}, nil
}

// CreateSecret creates Secret ns/name with labels, holding creds for the
// movers of one run, and returns a reference to it. A Secret of that name
// left by an earlier try of the same run (it carries all of labels) is
// replaced, in case the credentials changed between tries; another is an
// error.
func CreateSecret(ctx context.Context, kc kubernetes.Interface, ns, name string, labels map[string]string, creds deploy.Credentials) (deploy.SecretRef, error) {
	if err := createOrReplace(ctx, kc, deploy.CredentialsSecret(ns, name, labels, creds)); err != nil {
		return deploy.SecretRef{}, err
	}
	return deploy.SecretRef{Name: name, SessionToken: creds.SessionToken != "", CABundle: len(creds.CABundle) > 0}, nil
}

// DeleteSecret deletes Secret ns/name when it carries all of labels, the
// labels of the run that made it; one that does not is never touched, and
// one that is gone already is no error.
func DeleteSecret(ctx context.Context, kc kubernetes.Interface, ns, name string, labels map[string]string) error {
	api := kc.CoreV1().Secrets(ns)
	s, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get secret %s/%s: %w", ns, name, err)
	}
	for k, v := range labels {
		if s.Labels[k] != v {
			return fmt.Errorf("secret %s/%s was not made by this run: delete or rename it", ns, name)
		}
	}
	if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete secret %s/%s: %w", ns, name, err)
	}
	return nil
}

func getSecret(ctx context.Context, kc kubernetes.Interface, ns, name string) (*corev1.Secret, error) {
	s, err := kc.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &SecretError{Namespace: ns, Name: name}
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s/%s: %w", ns, name, err)
	}
	for _, k := range []string{deploy.KeyAccessKeyID, deploy.KeySecretAccessKey} {
		if !hasKey(s, k) {
			return nil, &SecretError{Namespace: ns, Name: name, MissingKey: k}
		}
	}
	return s, nil
}

// hasKey looks in data and in stringData: the API server folds stringData
// into data, but a Secret built by a client (a test's, a fake's) may still
// hold its keys there.
func hasKey(s *corev1.Secret, key string) bool {
	if _, ok := s.Data[key]; ok {
		return true
	}
	_, ok := s.StringData[key]
	return ok
}

func value(s *corev1.Secret, key string) []byte {
	if v, ok := s.Data[key]; ok {
		return v
	}
	if v, ok := s.StringData[key]; ok {
		return []byte(v)
	}
	return nil
}

// CreateKeySecret creates Secret ns/name with labels, holding the
// repository key file the movers of one run need (a write key for a
// backup, a read key for a restore). The caller deletes it with the run.
func CreateKeySecret(ctx context.Context, kc kubernetes.Interface, ns, name string, labels map[string]string, keyFile []byte) (deploy.KeyRef, error) {
	if err := createOrReplace(ctx, kc, deploy.KeySecret(ns, name, labels, keyFile)); err != nil {
		return deploy.KeyRef{}, err
	}
	return deploy.KeyRef{Name: name}, nil
}

// createOrReplace creates s, marked alive (kube.AnnotationAlive: the run
// refreshes it with KeepAlive); one of that name left by an earlier try of
// the same run (it carries all of s's labels) is replaced, as the Secret is
// immutable; another is an error.
func createOrReplace(ctx context.Context, kc kubernetes.Interface, s *corev1.Secret) error {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[kube.AnnotationAlive] = aliveNow()
	api := kc.CoreV1().Secrets(s.Namespace)
	_, err := api.Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if err := DeleteSecret(ctx, kc, s.Namespace, s.Name, s.Labels); err != nil {
			return err
		}
		_, err = api.Create(ctx, s, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("create secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// ReadKeySecret returns the repository key file Secret ns/name holds under
// deploy.KeyRepoKey (--key-secret).
func ReadKeySecret(ctx context.Context, kc kubernetes.Interface, ns, name string) ([]byte, error) {
	s, err := kc.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("key secret %s/%s not found: create it with key %s holding the key file", ns, name, deploy.KeyRepoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read key secret %s/%s: %w", ns, name, err)
	}
	b, ok := s.Data[deploy.KeyRepoKey]
	if !ok {
		return nil, fmt.Errorf("key secret %s/%s has no key %s: put the key file there", ns, name, deploy.KeyRepoKey)
	}
	return b, nil
}
