package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// The bash and zsh scripts are urfave/cli's (autocomplete/), which ask kbak
// itself for the candidates with --generate-bash-completion.
const bashCompletion = `# kbak completion for bash: source <(kbak completion bash)
_kbak_init_completion() {
  COMPREPLY=()
  _get_comp_words_by_ref "$@" cur prev words cword
}

_kbak_bash_autocomplete() {
  if [[ "${COMP_WORDS[0]}" != "source" ]]; then
    local cur opts base words
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    if declare -F _init_completion >/dev/null 2>&1; then
      _init_completion -n "=:" || return
    else
      _kbak_init_completion -n "=:" || return
    fi
    words=("${words[@]:0:$cword}")
    if [[ "$cur" == "-"* ]]; then
      requestComp="${words[*]} ${cur} --generate-bash-completion"
    else
      requestComp="${words[*]} --generate-bash-completion"
    fi
    opts=$(eval "${requestComp}" 2>/dev/null)
    COMPREPLY=($(compgen -W "${opts}" -- ${cur}))
    return 0
  fi
}

complete -o bashdefault -o default -o nospace -F _kbak_bash_autocomplete kbak
`

const zshCompletion = `#compdef kbak
# kbak completion for zsh: source <(kbak completion zsh)

_kbak_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _kbak_zsh_autocomplete kbak
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `EXAMPLES:
   source <(kbak completion bash)                 # in ~/.bashrc
   source <(kbak completion zsh)                  # in ~/.zshrc
   kbak completion fish > ~/.config/fish/completions/kbak.fish`,
		Action: func(c *cli.Context) error {
			shell, err := oneArg(c, "a shell: bash, zsh or fish")
			if err != nil {
				return err
			}
			switch shell {
			case "bash":
				_, err = fmt.Fprint(stdout(c), bashCompletion)
			case "zsh":
				_, err = fmt.Fprint(stdout(c), zshCompletion)
			case "fish":
				var script string
				if script, err = c.App.ToFishCompletion(); err == nil {
					_, err = fmt.Fprint(stdout(c), script)
				}
			default:
				return usagef("completion %q: kbak completes bash, zsh or fish", shell)
			}
			return err
		},
	}
}
