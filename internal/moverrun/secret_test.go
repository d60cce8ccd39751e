package moverrun

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/deploy"
)

func userSecret(data, stringData map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s3"}, Data: map[string][]byte{}, StringData: stringData}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func TestUseSecret(t *testing.T) {
	keys := map[string]string{deploy.KeyAccessKeyID: "a", deploy.KeySecretAccessKey: "b"}
	tests := []struct {
		name    string
		objs    []runtime.Object
		want    deploy.SecretRef
		wantErr string
		missing bool // a SecretError for no Secret at all
	}{
		{"keys in data", []runtime.Object{userSecret(keys, nil)}, deploy.SecretRef{Name: "s3"}, "", false},
		{"keys in stringData", []runtime.Object{userSecret(nil, keys)}, deploy.SecretRef{Name: "s3"}, "", false},
		{"token and CA", []runtime.Object{userSecret(map[string]string{deploy.KeyAccessKeyID: "a", deploy.KeySecretAccessKey: "b", deploy.KeySessionToken: "t", deploy.KeyCABundle: "pem"}, nil)},
			deploy.SecretRef{Name: "s3", SessionToken: true, CABundle: true}, "", false},
		{"no Secret", nil, deploy.SecretRef{}, "secret shop/s3 not found", true},
		{"a key missing", []runtime.Object{userSecret(map[string]string{deploy.KeyAccessKeyID: "a"}, nil)}, deploy.SecretRef{}, "secret shop/s3 has no key AWS_SECRET_ACCESS_KEY", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UseSecret(context.Background(), fake.NewClientset(tt.objs...), "shop", "s3")
			if tt.wantErr != "" {
				var se *SecretError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &se) || se.NotFound() != tt.missing {
					t.Fatalf("err = %v, want a SecretError %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("UseSecret = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// A retry of a run replaces the Secret its last try made; a Secret of the
// same name that is not the run's is never touched.
func TestCreateAndDeleteSecret(t *testing.T) {
	ctx := context.Background()
	labels := map[string]string{"run": "r1"}
	kc := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "theirs"}})
	creds := deploy.Credentials{AccessKeyID: "a", SecretAccessKey: "old"}
	if _, err := CreateSecret(ctx, kc, "shop", "creds", labels, creds); err != nil {
		t.Fatal(err)
	}
	creds.SecretAccessKey, creds.CABundle = "new", []byte("pem")
	ref, err := CreateSecret(ctx, kc, "shop", "creds", labels, creds)
	if err != nil || ref != (deploy.SecretRef{Name: "creds", CABundle: true}) {
		t.Fatalf("retry: %+v, %v", ref, err)
	}
	got, err := ReadCredentials(ctx, kc, "shop", "creds")
	if err != nil || got.SecretAccessKey != "new" || string(got.CABundle) != "pem" {
		t.Fatalf("after the retry the Secret holds %+v, %v", got, err)
	}
	if _, err := CreateSecret(ctx, kc, "shop", "theirs", labels, creds); err == nil || !strings.Contains(err.Error(), "not made by this run") {
		t.Errorf("create over someone's Secret: %v", err)
	}
	if err := DeleteSecret(ctx, kc, "shop", "theirs", labels); err == nil {
		t.Error("deleted a Secret the run did not make")
	}
	if err := DeleteSecret(ctx, kc, "shop", "creds", labels); err != nil {
		t.Fatal(err)
	}
	if err := DeleteSecret(ctx, kc, "shop", "creds", labels); err != nil {
		t.Errorf("deleting a Secret that is gone: %v", err)
	}
	left, _ := kc.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{})
	if len(left.Items) != 1 || left.Items[0].Name != "theirs" {
		t.Errorf("secrets left %v, want theirs", left.Items)
	}
}
