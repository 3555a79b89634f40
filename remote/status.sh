# nodeimg status: run on one machine over SSH (`sh -s`) by `nodeimg status`.
# It only reads, and prints what it finds one fact a line: `KEY VALUE`.
# Rendered by nodeimg for the machine's role (every value shell-quoted); the
# paths come from src/firstboot.rs.
set -u
STATUS_FILE={{ status_file }}
fact() { printf '%s %s\n' "$1" "$2"; }
each() { # KEY COMMAND...: one fact a line of its output
  key=$1; shift
  "$@" 2>&1 | while IFS= read -r line; do fact "$key" "$line"; done
}
# MicroK8s and the release need root; the login user of a nodeimg machine
# has sudo without a password. -n: never wait for a password prompt.
if [ "$(id -u)" = 0 ]; then as_root() { "$@"; }; else as_root() { sudo -n "$@"; }; fi

fact hostname "$(hostname)"
fact instance-id "$(cat /var/lib/cloud/data/instance-id 2>/dev/null || echo -)"
# cloud-init keeps its first boot's result here (/run/cloud-init links to it).
if [ -s /var/lib/cloud/data/result.json ]; then
  fact cloud-init-result "$(tr -d '\n' < /var/lib/cloud/data/result.json)"
elif [ -e /var/lib/cloud/data/status.json ]; then
  fact cloud-init-result running
else
  fact cloud-init-result none
fi
if [ -r "$STATUS_FILE" ]; then
  each step cat "$STATUS_FILE"
else
  fact no-status-file "$STATUS_FILE"
fi
{%- if role == "master" %}
NAMESPACE={{ namespace }}
# Only the STATUS word of `helm status`: its other lines (notes) are the
# chart's to say, and nothing of the values is printed.
release_state() {
  fact release "$1 $(as_root microk8s helm3 status "$1" -n "$NAMESPACE" 2>/dev/null | sed -n 's/^STATUS: //p' | head -n 1)"
}
if command -v microk8s > /dev/null 2>&1; then
  each node as_root microk8s kubectl get nodes --no-headers
{%- for r in releases %}
  release_state {{ r }}
{%- endfor %}
else
  fact no-kubernetes "the microk8s command is not installed"
fi
{%- endif %}
fact end -
