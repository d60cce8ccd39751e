// Package schedule holds what runs kbak on a timetable: cron spec parsing,
// retention policies (pure functions of now), and the long-running agent.
package schedule
