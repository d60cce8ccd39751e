// Package hint keeps the advice in kbak's errors and reports apart from the
// words that name a setting. Libraries say which setting would help
// (Method, SecretName, StorageClassMap...) and leave its spelling to whoever
// shows the text: cmd/kbak spells a setting as its flag, the agent as a key
// of its configuration, so that nobody is told to pass a flag they cannot
// use. It is a leaf under every package that advises.
package hint
