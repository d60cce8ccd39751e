// Package doctor answers "can kbak back up here?" before the first backup:
// the snapshot API, CSI drivers and their snapshot classes, which method each
// storage class gets, the permissions kbak needs, and (optionally) one
// StatefulSet's claims. Every finding carries advice.
package doctor
