# nodeimg diff: run on one machine over SSH (`sh -s`) by `nodeimg diff`. It
# only reads: the instance-id of the seed the machine booted from, and the
# sha256 of each file its seed wrote (`file N SHA256`, or `file N missing`);
# with `contents`, the files nodeimg asks to show (`content N BASE64`).
# Rendered by nodeimg (every value shell-quoted).
set -u
if [ "$(id -u)" = 0 ]; then as_root() { "$@"; }; else as_root() { sudo -n "$@"; }; fi
printf 'instance-id %s\n' "$(cat /var/lib/cloud/data/instance-id 2>/dev/null || echo -)"
hash_of() { # N PATH
  if as_root test -f "$2"; then
    printf 'file %s %s\n' "$1" "$(as_root sha256sum "$2" | cut -d' ' -f1)"
  else
    printf 'file %s missing\n' "$1"
  fi
}
content_of() { # N PATH
  printf 'content %s %s\n' "$1" "$(as_root base64 -w0 "$2")"
}
{%- for f in hashes %}
hash_of {{ f.n }} {{ f.path }}
{%- endfor %}
{%- for f in contents %}
content_of {{ f.n }} {{ f.path }}
{%- endfor %}
printf 'end -\n'
