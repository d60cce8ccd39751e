// Package deploy renders the typed Kubernetes objects kbak creates or prints:
// mover pods, the scheduled CronJob, the agent Deployment and their RBAC.
package deploy
