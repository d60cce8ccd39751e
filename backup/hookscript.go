package backup

import (
	"strconv"
	"strings"
	"time"
)

// The hooks run in the application container through a POSIX sh wrapper
// (hookScript), which
//   - starts the hook in the background and writes its pid to
//     DIR/PHASE.pid, so that stopScript can kill it and its children when
//     it passes the hook timeout;
//   - with the pre hook, starts the deadman: a detached subshell that
//     sleeps, then runs the post hook unless kbak's post hook ran first;
//   - with the post hook, claims the thaw: whoever makes DIR/thaw first
//     (kbak's post hook or the deadman) runs the post hook, the other does
//     not. kbak's post hook kills the sleeping deadman, or says, with
//     thawedByDeadmanLine, that it had already thawed.
//
// DIR is per backup run, so runs never see each other's files.

// thawedByDeadmanLine is what kbak's post hook prints when the deadman had
// already run the post hook.
const thawedByDeadmanLine = "kbak-hook: thawed by the deadman"

// killTree stops a process, then its descendants (found through /proc, so
// that no ps is needed), then kills them all.
const killTree = `kbak_kill() {
	kill -STOP "$1" 2>/dev/null || return 0
	for s in /proc/[0-9]*/status; do
		while read -r k v; do
			if [ "$k" = PPid: ]; then
				if [ "$v" = "$1" ]; then c=${s#/proc/}; ( kbak_kill "${c%/status}" ); fi
				break
			fi
		done 2>/dev/null < "$s"
	done
	kill -KILL "$1" 2>/dev/null
	return 0
}
`

// shQuote quotes s as one word of a POSIX shell.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// shLine renders argv as a shell command line that runs it as it is.
func shLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shQuote(a)
	}
	return strings.Join(q, " ")
}

// hookScript is the argv that runs hook cmd of phase in the container;
// deadmanPost, when deadman > 0, is the post hook its deadman runs.
func hookScript(dir, phase string, cmd, deadmanPost []string, deadman time.Duration) []string {
	var b strings.Builder
	b.WriteString(killTree)
	b.WriteString("d=" + shQuote(dir) + "\n")
	b.WriteString(`mkdir -p "$d" || { echo "kbak-hook: cannot make $d in the container" >&2; exit 125; }` + "\n")
	if phase == "post" {
		b.WriteString(`if ! mkdir "$d/thaw" 2>/dev/null; then echo "` + thawedByDeadmanLine + `"; exit 0; fi` + "\n")
		b.WriteString(`if read -r p < "$d/deadman.pid" 2>/dev/null; then kbak_kill "$p"; fi` + "\n")
	}
	if len(deadmanPost) > 0 && deadman > 0 {
		secs := int64((deadman + time.Second - 1) / time.Second)
		// HUP ignored and every stream away from the exec session: the
		// deadman outlives it, and the session ends when the hook does.
		b.WriteString("( trap '' HUP INT; sleep " + strconv.FormatInt(secs, 10) +
			`; mkdir "$d/thaw" 2>/dev/null || exit 0; ` + shLine(deadmanPost) +
			` > "$d/deadman.out" 2>&1; echo $? > "$d/deadman.rc" ) < /dev/null > /dev/null 2>&1 &` + "\n")
		b.WriteString(`echo $! > "$d/deadman.pid"` + "\n")
	}
	b.WriteString(shLine(cmd) + " &\n")
	b.WriteString(`p=$!; echo "$p" > "$d/` + phase + `.pid"` + "\n")
	b.WriteString(`[ -e "$d/` + phase + `.stop" ] && kbak_kill "$p"` + "\n")
	b.WriteString(`wait "$p"; rc=$?` + "\n")
	if phase == "post" {
		// A deadman that somehow outlived kbak_kill finds no DIR to
		// claim the thaw in.
		b.WriteString(`rm -rf "$d"` + "\n")
	}
	b.WriteString(`exit "$rc"` + "\n")
	return []string{"/bin/sh", "-c", b.String(), "kbak-hook"}
}

// stopScript kills the hook of phase started by hookScript in dir, with
// its children.
func stopScript(dir, phase string) []string {
	return []string{"/bin/sh", "-c", killTree + "d=" + shQuote(dir) + "\n" +
		`: > "$d/` + phase + `.stop"` + "\n" +
		`if read -r p < "$d/` + phase + `.pid" 2>/dev/null; then kbak_kill "$p"; fi` + "\n", "kbak-hook-stop"}
}

// holdScript is the argv that runs hold hook cmd with the session's stdin;
// with deadman > 0 a detached timer kills it then, should it still run
// (kbak died and the stream's end did not reach it).
func holdScript(dir string, cmd []string, deadman time.Duration) []string {
	var b strings.Builder
	b.WriteString(killTree)
	b.WriteString("d=" + shQuote(dir) + "\n")
	b.WriteString(`mkdir -p "$d" || { echo "kbak-hook: cannot make $d in the container" >&2; exit 125; }` + "\n")
	// A background command's stdin is /dev/null unless redirected.
	b.WriteString("exec 3<&0\n")
	b.WriteString(shLine(cmd) + " <&3 3<&- &\n")
	b.WriteString(`p=$!; echo "$p" > "$d/hold.pid"` + "\n")
	b.WriteString("exec 3<&-\n")
	b.WriteString(`[ -e "$d/hold.stop" ] && kbak_kill "$p"` + "\n")
	if deadman > 0 {
		secs := int64((deadman + time.Second - 1) / time.Second)
		b.WriteString("( trap '' HUP INT; sleep " + strconv.FormatInt(secs, 10) + `; kbak_kill "$p" ) < /dev/null > /dev/null 2>&1 &` + "\n")
		b.WriteString("dm=$!\n")
	}
	b.WriteString(`wait "$p"; rc=$?` + "\n")
	if deadman > 0 {
		b.WriteString(`kbak_kill "$dm"` + "\n")
	}
	b.WriteString(`rm -f "$d/hold.pid" "$d/hold.stop"; rmdir "$d" 2>/dev/null` + "\n")
	b.WriteString(`exit "$rc"` + "\n")
	return []string{"/bin/sh", "-c", b.String(), "kbak-hold"}
}
