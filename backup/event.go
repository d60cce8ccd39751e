package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
)

// Reasons of the Event every backup run that found its StatefulSet records
// on it, by hand, from a CronJob or from the agent alike: `kubectl describe
// sts` shows the last runs, and event exporters can alert on them.
const (
	ReasonCompleted       = "BackupCompleted"
	ReasonPartiallyFailed = "BackupPartiallyFailed"
	ReasonFailed          = "BackupFailed"
)

// eventTimeout bounds recording the Event, which also happens after the
// run was interrupted.
const eventTimeout = 10 * time.Second

// recordEvent records how the run ended on sts. Events expire with the API
// server's event TTL (1h by default); they are a record, not a leftover. A
// refused Event (no create permission on events) is a warning in the log,
// never a failure of the backup.
func (r *run) recordEvent(ctx context.Context, sts *appsv1.StatefulSet, runErr error) {
	reason, typ := ReasonCompleted, corev1.EventTypeNormal
	msg := fmt.Sprintf("backup %s completed", r.id)
	switch {
	case errors.Is(runErr, ErrPartiallyFailed):
		reason, typ = ReasonPartiallyFailed, corev1.EventTypeWarning
		msg = catalog.OneLine(runErr.Error())
	case runErr != nil:
		reason, typ = ReasonFailed, corev1.EventTypeWarning
		msg = fmt.Sprintf("backup %s failed: %s", r.id, catalog.OneLine(runErr.Error()))
	}
	const maxMessage = 1024 // the API server refuses longer ones
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	now := metav1.NewTime(r.deps.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", sts.Name, now.UnixNano()),
			Namespace: sts.Namespace,
			Labels:    map[string]string{kube.LabelBackupID: kube.LabelValue(r.id)},
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "apps/v1", Kind: "StatefulSet", Namespace: sts.Namespace, Name: sts.Name,
			UID: sts.UID, ResourceVersion: sts.ResourceVersion,
		},
		Reason: reason, Message: msg, Type: typ, Action: "Backup",
		Source:         corev1.EventSource{Component: kube.ManagedByValue},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "kbak.io/kbak",
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventTimeout)
	defer cancel()
	if _, err := r.deps.Kube.CoreV1().Events(sts.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		advice := ""
		if apierrors.IsForbidden(err) {
			advice = " (grant create on events in the namespace)"
		}
		r.log.Warn("cannot record the backup's Event on the StatefulSet"+advice, "reason", reason, "err", err)
	}
}
