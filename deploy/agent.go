package deploy

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"

	"k8s.io/utils/ptr"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kbak/kbak/internal/kube"
)

// Defaults of the agent's manifests.
const (
	DefaultAgentNamespace = "kbak"
	DefaultAgentName      = "kbak-agent"
	DefaultAgentPort      = 9090
	// AgentConfigKey is the file name of the configuration in the ConfigMap
	// and under AgentConfigDir in the pod.
	AgentConfigKey = "agent.yaml"
	AgentConfigDir = "/etc/kbak"
)

// Agent describes the Deployment that runs `kbak agent` and what it needs.
type Agent struct {
	Namespace  string // default DefaultAgentNamespace
	Name       string // default DefaultAgentName; also names its RBAC
	Image      string // default DefaultMoverImage
	PullPolicy corev1.PullPolicy
	Port       int32 // of /metrics and /healthz; must match listen: in Config

	// Config is the agent configuration file (YAML), shipped in a ConfigMap.
	Config []byte
	// BackupNamespaces are the namespaces of the StatefulSets the agent backs
	// up; it gets the backup permissions there and nowhere else.
	BackupNamespaces []string
	// Secret names the store credentials Secret: in the agent's namespace
	// for the agent itself, and in each backup namespace for the movers.
	// Empty for a store that needs no keys.
	Secret string
	// Hooks grants pods/exec in the backup namespaces.
	Hooks bool
	// Namespace is included as an object unless SkipNamespace.
	SkipNamespace bool
}

func (a Agent) withDefaults() Agent {
	if a.Namespace == "" {
		a.Namespace = DefaultAgentNamespace
	}
	if a.Name == "" {
		a.Name = DefaultAgentName
	}
	if a.Image == "" {
		a.Image = DefaultMoverImage
	}
	if a.PullPolicy == "" {
		a.PullPolicy = corev1.PullIfNotPresent
	}
	if a.Port == 0 {
		a.Port = DefaultAgentPort
	}
	return a
}

// Objects renders the agent: its Namespace, ServiceAccount, a ClusterRole
// with the backup permissions bound only in BackupNamespaces, a ClusterRole
// for the cluster-scoped reads, the ConfigMap, the Deployment and a Service
// for /metrics.
func (a Agent) Objects() []runtime.Object {
	a = a.withDefaults()
	labels := kube.AgentLabels(a.Name)
	sa := subject{a.Namespace, a.Name}
	backupRole := "kbak:agent:" + a.Namespace + ":" + a.Name + ":backup"
	readRole := "kbak:agent:" + a.Namespace + ":" + a.Name + ":read"
	var objs []runtime.Object
	if !a.SkipNamespace {
		objs = append(objs, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: a.Namespace, Labels: labels},
		})
	}
	objs = append(objs,
		serviceAccount(a.Namespace, a.Name, labels),
		clusterRole(backupRole, labels, BackupRules(a.Secret, "", a.Hooks)),
		clusterRole(readRole, labels, ClusterReadRules()),
		clusterRoleBinding(readRole, labels, readRole, sa),
	)
	nss := slices.Clone(a.BackupNamespaces)
	slices.Sort(nss)
	for _, ns := range slices.Compact(nss) {
		// A RoleBinding to a ClusterRole grants its rules in ns only.
		objs = append(objs, roleBinding(ns, a.Name, labels, "ClusterRole", backupRole, sa))
	}
	objs = append(objs,
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: a.Namespace, Labels: labels},
			Data:       map[string]string{AgentConfigKey: string(a.Config)},
		},
		a.deployment(labels),
		&corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: a.Namespace, Labels: labels},
			Spec: corev1.ServiceSpec{
				Selector: kube.AgentPodLabels(a.Name),
				Ports:    []corev1.ServicePort{{Name: "metrics", Port: a.Port, TargetPort: intstr.FromString("metrics")}},
			},
		},
	)
	return objs
}

func (a Agent) deployment(labels map[string]string) *appsv1.Deployment {
	one := int32(1)
	c := corev1.Container{
		Name:            "agent",
		Image:           a.Image,
		ImagePullPolicy: a.PullPolicy,
		Args:            []string{"agent", "--config", AgentConfigDir + "/" + AgentConfigKey},
		Env:             []corev1.EnvVar{{Name: "KBAK_MOVER_IMAGE", Value: a.Image}},
		Ports:           []corev1.ContainerPort{{Name: "metrics", ContainerPort: a.Port}},
		VolumeMounts:    []corev1.VolumeMount{{Name: "config", MountPath: AgentConfigDir, ReadOnly: true}},
		// An unreachable API server makes the agent unready (/healthz),
		// not dead: restarting it would not bring the server back.
		LivenessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/livez", Port: intstr.FromString("metrics")}},
			PeriodSeconds: 30,
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("metrics")}},
		},
		Resources:       controllerResources(),
		SecurityContext: controllerSecurityContext(),
	}
	if a.Secret != "" {
		c.Env = append(c.Env, secretEnv(KeyAccessKeyID, a.Secret, false), secretEnv(KeySecretAccessKey, a.Secret, false),
			secretEnv(KeySessionToken, a.Secret, true))
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: a.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			// Two agents side by side would run every schedule twice.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: kube.AgentPodLabels(a.Name)},
			Template: corev1.PodTemplateSpec{
				// The pod is not labelled managed-by=kbak: that label marks
				// what `kbak gc` may delete.
				ObjectMeta: metav1.ObjectMeta{
					Labels: kube.AgentPodLabels(a.Name),
					Annotations: map[string]string{
						"prometheus.io/scrape": "true", "prometheus.io/port": strconv.Itoa(int(a.Port)),
						// A changed configuration rolls the pod; the agent
						// reads it once at start.
						kube.AnnotationConfigHash: fmt.Sprintf("%x", sha256.Sum256(a.Config)),
					},
				},
				Spec: corev1.PodSpec{
					// Running backups clean up after SIGTERM.
					TerminationGracePeriodSeconds: &cleanupGrace,
					ServiceAccountName:            a.Name,
					AutomountServiceAccountToken:  ptr.To(true),
					Containers:                    []corev1.Container{c},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: a.Name}},
					}}},
				},
			},
		},
	}
}
