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

// SecretRef names the Secret a pod reads the store credentials from, and
// which of the optional keys it holds. The zero SecretRef is no Secret: a
// store that needs none (file://, IAM roles for pods).
type SecretRef struct {
	Name         string
	SessionToken bool // holds KeySessionToken
	CABundle     bool // holds KeyCABundle
}

// Apply gives every container of spec the credentials as references to the
// Secret, never as values, and, when the Secret holds a CA bundle, mounts it
// and points AWS_CA_BUNDLE at it.
func (r SecretRef) Apply(spec *corev1.PodSpec) {
	if r.Name == "" {
		return
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		c.Env = append(c.Env, secretEnv(KeyAccessKeyID, r.Name, false), secretEnv(KeySecretAccessKey, r.Name, false))
		if r.SessionToken {
			c.Env = append(c.Env, secretEnv(KeySessionToken, r.Name, true))
		}
		if r.CABundle {
			c.Env = append(c.Env, corev1.EnvVar{Name: "AWS_CA_BUNDLE", Value: moverCADir + "/" + KeyCABundle})
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: caVolume, MountPath: moverCADir, ReadOnly: true})
		}
	}
	if r.CABundle {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: caVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: r.Name, Items: []corev1.KeyToPath{{Key: KeyCABundle, Path: KeyCABundle}},
		}}})
	}
}

func secretEnv(key, secret string, optional bool) corev1.EnvVar {
	ref := &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}
	if optional {
		ref.Optional = &optional
	}
	return corev1.EnvVar{Name: key, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref}}
}

// KeyRepoKey is the key of a Secret that holds a repository key file (a
// write key, or for restores a read key): kbak's --key-secret reads it, and
// mover pods get it mounted as a file.
const KeyRepoKey = "kbak.key"

// Where a pod finds the repository key, and the variable that tells kbak.
const (
	moverKeyDir = "/etc/kbak/key"
	keyVolume   = "repo-key"
	// EnvKeyFile names the key file to kbak, as --key-file does.
	EnvKeyFile = "KBAK_KEY_FILE"
)

// KeySecret renders the Secret kbak creates for one run's movers to read
// the repository key from.
func KeySecret(ns, name string, labels map[string]string, keyFile []byte) *corev1.Secret {
	immutable := true
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Immutable:  &immutable,
		Data:       map[string][]byte{KeyRepoKey: keyFile},
	}
}

// KeyRef names a Secret holding KeyRepoKey; the zero KeyRef is none (a
// repository that is not encrypted).
type KeyRef struct{ Name string }

// Apply mounts the key file into every container of spec, read by the
// owner only, and points KBAK_KEY_FILE at it: the key is never in an
// argument or an environment value.
func (r KeyRef) Apply(spec *corev1.PodSpec) {
	if r.Name == "" {
		return
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		c.Env = append(c.Env, corev1.EnvVar{Name: EnvKeyFile, Value: moverKeyDir + "/" + KeyRepoKey})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: keyVolume, MountPath: moverKeyDir, ReadOnly: true})
	}
	mode := int32(0o400)
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: keyVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: r.Name, DefaultMode: &mode, Items: []corev1.KeyToPath{{Key: KeyRepoKey, Path: KeyRepoKey}},
	}}})
}
