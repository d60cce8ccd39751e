package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Parameters csi-snapshotter and csi-provisioner add with
// --extra-create-metadata.
const (
	paramSnapshotName      = "csi.storage.k8s.io/volumesnapshot/name"
	paramSnapshotNamespace = "csi.storage.k8s.io/volumesnapshot/namespace"
	paramPVCName           = "csi.storage.k8s.io/pvc/name"
	paramPVCNamespace      = "csi.storage.k8s.io/pvc/namespace"
)

// faults reads fault-injection files at each call, so a test switches a
// fault on and off by writing and removing a file, without restarting the
// driver:
//
//	<dir>/snapshot-error/<namespace>  CreateSnapshot fails with codes.Internal and the file's content
//	<dir>/snapshot-slow/<namespace>   containing N: the snapshot is not ready_to_use until N seconds after creation
//	<dir>/snapshot-delete-slow/<namespace>  containing N: DeleteSnapshot of a snapshot made there takes N seconds
//	<dir>/group-snapshot-error/<namespace>  CreateVolumeGroupSnapshot fails with codes.Internal and the file's content
//	<dir>/group-snapshot-slow/<namespace>   containing N: the group snapshot and its members are not ready_to_use until N seconds after creation
type faults struct {
	dir string // empty: no faults
}

// snapshotError returns the message of the error fault set for namespace,
// if any.
func (f faults) snapshotError(namespace string) (msg string, ok bool, err error) {
	b, ok, err := f.read("snapshot-error", namespace)
	if !ok || err != nil {
		return "", ok, err
	}
	msg = strings.TrimSpace(string(b))
	if msg == "" {
		msg = "injected snapshot error"
	}
	return msg, true, nil
}

// groupSnapshotError returns the message of the group snapshot error fault
// set for namespace, if any.
func (f faults) groupSnapshotError(namespace string) (msg string, ok bool, err error) {
	b, ok, err := f.read("group-snapshot-error", namespace)
	if !ok || err != nil {
		return "", ok, err
	}
	msg = strings.TrimSpace(string(b))
	if msg == "" {
		msg = "injected group snapshot error"
	}
	return msg, true, nil
}

// groupSnapshotDelay returns how long a new group snapshot in namespace
// stays not ready.
func (f faults) groupSnapshotDelay(namespace string) (time.Duration, error) {
	return f.seconds("group-snapshot-slow", namespace)
}

// snapshotDelay returns how long a new snapshot in namespace stays not ready.
func (f faults) snapshotDelay(namespace string) (time.Duration, error) {
	return f.seconds("snapshot-slow", namespace)
}

// deleteDelay returns how long deleting a snapshot made in namespace takes:
// the storage system is slow to free it, so the snapshot controller holds
// the VolumeSnapshot and its content under their finalizers meanwhile.
func (f faults) deleteDelay(namespace string) (time.Duration, error) {
	return f.seconds("snapshot-delete-slow", namespace)
}

// seconds reads a fault file holding a number of seconds.
func (f faults) seconds(kind, namespace string) (time.Duration, error) {
	b, ok, err := f.read(kind, namespace)
	if !ok || err != nil {
		return 0, err
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("fault file %s/%s: want a number of seconds, got %q", kind, namespace, b)
	}
	return time.Duration(n * float64(time.Second)), nil
}

func (f faults) read(kind, namespace string) ([]byte, bool, error) {
	if f.dir == "" || namespace == "" || !validID(namespace) {
		return nil, false, nil
	}
	b, err := os.ReadFile(filepath.Join(f.dir, kind, namespace))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read fault file %s/%s: %w", kind, namespace, err)
	}
	return b, true, nil
}
