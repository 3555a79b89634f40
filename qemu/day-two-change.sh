# boot-test's day two: changes one file a seed wrote on a booted machine,
# over `ssh` as a user would by hand (its original kept beside it), or puts
# the original back. Run in `sh -s` by boot-test; every value shell-quoted.
set -eu
if [ "$(id -u)" = 0 ]; then as_root() { "$@"; }; else as_root() { sudo -n "$@"; }; fi
FILE={{ path }}
KEPT="$FILE".nodeimg-boot-test
{%- if change %}
as_root cp -p "$FILE" "$KEPT"
printf '%s\n' {{ line }} | as_root tee -a "$FILE" > /dev/null
{%- else %}
as_root mv -f "$KEPT" "$FILE"
{%- endif %}
