// Package schedule holds what runs kbak on a timetable: cron spec parsing
// and next runs (pure functions of now), scheduled backups as Kubernetes
// CronJobs with their own least-privilege ServiceAccount (Create, List,
// Delete), and the long-running agent that runs several schedules in one
// process and serves /metrics. Retention is internal/retention's: a
// scheduled run prunes through it as `kbak prune` does.
package schedule
