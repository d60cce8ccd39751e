// Package deploy renders the typed Kubernetes objects kbak creates or
// prints, and applies the ones that outlive a run: mover pods (MoverPod),
// the credentials Secret and the reference that hands it to a pod
// (SecretRef), a schedule's CronJob, ServiceAccount and least-privilege
// RBAC, the agent's Deployment and the kustomize base in deploy/kustomize,
// as YAML or by server-side apply. Their labels come from internal/kube.
package deploy
