# nodeimg status: run on one machine over SSH (`sh -s`) by `nodeimg status`.
# It only reads, and prints what it finds one fact a line: `KEY VALUE`.
# Rendered by nodeimg for each machine (the first master also asks
# Kubernetes; every value shell-quoted); the paths come from src/firstboot.rs.
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
{%- if asks_kubernetes %}
NAMESPACE={{ namespace }}
# The snap's command, under sudo's secure_path or not.
MICROK8S=$(command -v microk8s || echo /snap/bin/microk8s)
# helm's STATUS word for a release: `missing` when helm knows no such
# release, `unknown: WHY` when it could not be asked. Only that word is
# read: the rest (the chart's notes) is the chart's to say, and nothing of
# the values is printed.
release_state() {
  if said=$(as_root timeout 20 "$MICROK8S" helm3 status "$1" -n "$NAMESPACE" 2>&1); then
    fact release "$1 $(printf '%s\n' "$said" | sed -n 's/^STATUS: //p' | head -n 1)"
  elif printf '%s' "$said" | grep -q 'release: not found'; then
    fact release "$1 missing"
  else
    fact release "$1 unknown: $(printf '%s\n' "$said" | tail -n 1)"
  fi
}
if [ -x "$MICROK8S" ]; then
  # stdout only: an error line is no node.
  if nodes=$(as_root "$MICROK8S" kubectl get nodes --no-headers --request-timeout=10s 2>/dev/null); then
    printf '%s\n' "$nodes" | while IFS= read -r line; do [ -n "$line" ] && fact node "$line"; done
  else
    fact no-kubernetes "kubectl get nodes failed: $(as_root "$MICROK8S" kubectl get nodes --request-timeout=10s 2>&1 > /dev/null | tail -n 1)"
  fi
{%- for r in releases %}
  release_state {{ r }}
{%- endfor %}
else
  fact no-kubernetes "the microk8s command is not installed"
fi
{%- endif %}
fact end -
