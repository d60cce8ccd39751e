package deploy

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MoverImageName is the name of the kbak image, which mover pods, CronJobs
// and the agent run; its tag is kbak's version (MoverImage). kbak publishes
// the image to no registry: kbak.local names no registry that exists, so
// nothing is ever pulled by that name from anyone's namespace. `make
// image` writes it, to be loaded on the nodes or pushed to a registry of
// the operator's, whose name --mover-image then gives.
const MoverImageName = "kbak.local/kbak"

// DefaultMoverImage is the image of a development build (version "dev")
// and of manifests rendered without a version (the kustomize base).
const DefaultMoverImage = MoverImageName + ":dev"

// MoverImage is the kbak image of a build of version, as `make image` tags
// it: a CLI runs movers of its own version unless told otherwise. A tag
// holds letters, digits, '_', '.' and '-' only, at most 128: any other
// character becomes '-' (the Makefile does the same). No version, or
// "dev", is DefaultMoverImage.
func MoverImage(version string) string {
	if version == "" || version == "dev" {
		return DefaultMoverImage
	}
	tag := []byte(version)
	for i, c := range tag {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			tag[i] = '-'
		}
	}
	return MoverImageName + ":" + string(tag[:min(len(tag), 128)])
}

// Where a mover pod finds its volume and its store's CA bundle.
const (
	MoverDataPath  = "/data"
	moverTmpDir    = "/tmp" // spooled upload parts and the repository's file caches
	tmpVolume      = "tmp"
	moverCADir     = "/etc/kbak/ca"
	moverContainer = "mover"
	dataVolume     = "data"
	caVolume       = "store-ca"
)

// Keys of a credentials Secret. They are the AWS SDK's environment variable
// names, so a Secret written by hand for --secret uses the same ones.
const (
	KeyAccessKeyID     = "AWS_ACCESS_KEY_ID"
	KeySecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	KeySessionToken    = "AWS_SESSION_TOKEN"
	// KeyCABundle holds a PEM bundle for a store with a private CA; it is
	// mounted as a file and AWS_CA_BUNDLE points to it.
	KeyCABundle = "ca.crt"
)

// Upload says what an upload mover stores where.
type Upload struct {
	Repo, Key, ResultKey string
	SizeHint             int64
	Compression          string
	// Parent and ParentMatch let a mover of the deduplicating repository
	// skip the files unchanged since an earlier upload (see kbak mover
	// upload --help).
	Parent, ParentMatch string
	// LockDays, when positive, puts every object the mover writes under
	// S3 Object Lock retention for that many days, in LockMode
	// (compliance or governance; empty is compliance).
	LockDays int
	LockMode string
}

// Args are the mover's arguments to store /data.
func (u Upload) Args() []string {
	args := []string{"mover", "upload", "--repo", u.Repo, "--source", MoverDataPath, "--key", u.Key,
		"--result-key", u.ResultKey, "--size-hint", strconv.FormatInt(u.SizeHint, 10), "--compression", u.Compression}
	if u.Parent != "" {
		args = append(args, "--parent", u.Parent, "--parent-match", u.ParentMatch)
	}
	if u.LockDays > 0 {
		args = append(args, "--lock-days", strconv.Itoa(u.LockDays))
		if u.LockMode != "" {
			args = append(args, "--lock-mode", u.LockMode)
		}
	}
	return args
}

// Download says what a restore mover extracts into /data after checking
// its digest.
type Download struct {
	Repo, Key, SHA256 string
	// RestoreDevices creates the archive's device nodes and RestoreSetID
	// keeps setuid and setgid bits and file capabilities; without them the
	// mover skips or clears them and reports what (see kbak mover download
	// --help). The mover pod needs the matching MoverPod fields.
	RestoreDevices, RestoreSetID bool
}

// Args are the mover's arguments.
func (d Download) Args() []string {
	args := []string{"mover", "download", "--repo", d.Repo, "--key", d.Key, "--sha256", d.SHA256, "--target", MoverDataPath}
	if d.RestoreDevices {
		args = append(args, "--restore-devices")
	}
	if d.RestoreSetID {
		args = append(args, "--restore-setid")
	}
	return args
}

// MoverPod describes one mover pod.
type MoverPod struct {
	Name      string
	Namespace string
	Labels    map[string]string
	Image     string
	// PullPolicy defaults to IfNotPresent, which suits both a registry image
	// and one preloaded on the nodes.
	PullPolicy corev1.PullPolicy
	Args       []string
	// Claim is mounted at /data; ReadOnly mounts it read-only both in the pod
	// volume and in the container (backup never writes to its source).
	Claim    string
	ReadOnly bool
	// NodeName pins the pod next to the application pod that holds a
	// ReadWriteOnce volume; empty lets the scheduler choose.
	NodeName string
	// Secret holds the store credentials; none for stores that need none
	// (file://).
	Secret SecretRef
	// Key holds the repository key of an encrypted repository.
	Key KeyRef
	// Restore movers must restore owners, modes and times, so they get
	// CHOWN, DAC_OVERRIDE and FOWNER; backup movers only need to read
	// everything (DAC_READ_SEARCH).
	Restore bool
	// RestoreDevices adds MKNOD, to create device nodes; RestoreSetID
	// adds FSETID and SETFCAP, to keep setuid and setgid bits (a setgid
	// file of a group the mover is not in) and set file capabilities.
	// They go with the same fields of Download; Restore only.
	RestoreDevices, RestoreSetID bool
	// Security is how the pod runs (zero: SecurityPrivileged); RunAs is
	// the identity of a SecurityUnprivileged pod, whose FSGroup is the
	// pod's fsGroup for a restore and only a supplemental group for a
	// backup.
	Security Security
	RunAs    RunAs
	// ServiceAccount defaults to the namespace's default; the mover calls no
	// Kubernetes API, so its token is not mounted.
	ServiceAccount string
	Resources      corev1.ResourceRequirements
	// ActiveDeadline, when positive, is how long the pod may run before
	// the kubelet stops it, so a mover whose kbak died still ends.
	ActiveDeadline time.Duration
}

// Pod renders the mover pod.
func (m MoverPod) Pod() *corev1.Pod {
	pull := m.PullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	image := m.Image
	if image == "" {
		image = DefaultMoverImage
	}
	no := false
	grace := int64(10)
	c := corev1.Container{
		Name:            moverContainer,
		Image:           image,
		ImagePullPolicy: pull,
		Args:            m.Args,
		VolumeMounts: []corev1.VolumeMount{
			{Name: dataVolume, MountPath: MoverDataPath, ReadOnly: m.ReadOnly},
			{Name: tmpVolume, MountPath: moverTmpDir},
		},
		Env:                      []corev1.EnvVar{{Name: "TMPDIR", Value: moverTmpDir}},
		Resources:                m.Resources,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	volumes := []corev1.Volume{{
		Name: dataVolume,
		VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
			ClaimName: m.Claim,
			ReadOnly:  m.ReadOnly,
		}},
	}, {
		Name:         tmpVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			NodeName:                      m.NodeName,
			ServiceAccountName:            m.ServiceAccount,
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{c},
			Volumes:                       volumes,
		},
	}
	m.Secret.Apply(&pod.Spec)
	m.Key.Apply(&pod.Spec)
	m.secure(pod)
	if m.ActiveDeadline > 0 {
		secs := int64(m.ActiveDeadline / time.Second)
		if m.ActiveDeadline%time.Second != 0 {
			secs++
		}
		pod.Spec.ActiveDeadlineSeconds = &secs
	}
	return pod
}

// DefaultMoverResources keep a mover schedulable on a small node while
// leaving room for zstd and the upload buffers.
func DefaultMoverResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("512Mi"),
		},
	}
}
