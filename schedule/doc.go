// Package schedule holds what runs kbak on a timetable: cron spec parsing
// and next runs (pure functions of now), retention policies and pruning,
// scheduled backups as Kubernetes CronJobs with their own least-privilege
// ServiceAccount (Create, List, Delete), and the long-running agent that
// runs several schedules in one process and serves /metrics.
package schedule
